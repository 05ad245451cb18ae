//! `atrium forward`: local-run support for `make run`. The local platform runs inside a network
//! namespace of its own (pod IPs exist only there); this forwards ports of this machine's
//! loopback into that namespace so `curl` and `kubectl` on the host reach the gateway, the
//! admin endpoints and the API server.
//!
//! The listeners are bound first, in the caller's namespace; then the process enters the
//! target namespace (`setns`) and makes every upstream connection from there, on one thread.
//! Targets must be loopback addresses of that namespace.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;

use clap::Args;
use nix::sched::{CloneFlags, setns};

/// Flags of `atrium forward`.
#[derive(Clone, Debug, Args)]
pub struct ForwardArgs {
    /// The target network namespace, e.g. `/proc/<pid>/ns/net`.
    #[arg(long)]
    pub netns: PathBuf,
    /// `LISTEN=TARGET`, e.g. `127.0.0.1:8000=127.0.0.1:8000`; repeatable. TARGET must be a
    /// loopback address inside the namespace.
    #[arg(long = "port", value_parser = parse_pair, required = true)]
    pub ports: Vec<(SocketAddr, SocketAddr)>,
}

/// Forwarding could not start.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// A listen address could not be bound.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, #[source] std::io::Error),
    /// The namespace could not be entered.
    #[error("entering the network namespace {0}: {1}")]
    Netns(PathBuf, String),
    /// The runtime could not start.
    #[error("starting the runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

fn parse_pair(s: &str) -> Result<(SocketAddr, SocketAddr), String> {
    let (l, t) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected LISTEN=TARGET"))?;
    let listen: SocketAddr = l.parse().map_err(|_| format!("{l:?} is not an address"))?;
    let target: SocketAddr = t.parse().map_err(|_| format!("{t:?} is not an address"))?;
    if !target.ip().is_loopback() {
        return Err(format!(
            "{target} is not a loopback address; forward only into the run's own namespace"
        ));
    }
    Ok((listen, target))
}

/// Forwards until the process is stopped.
pub fn run(args: ForwardArgs) -> Result<(), ForwardError> {
    let mut listeners = vec![];
    for (listen, target) in &args.ports {
        let l = TcpListener::bind(listen).map_err(|e| ForwardError::Bind(*listen, e))?;
        l.set_nonblocking(true)
            .map_err(|e| ForwardError::Bind(*listen, e))?;
        listeners.push((l, *target));
    }
    let ns = std::fs::File::open(&args.netns)
        .map_err(|e| ForwardError::Netns(args.netns.clone(), e.to_string()))?;
    setns(&ns, CloneFlags::CLONE_NEWNET)
        .map_err(|e| ForwardError::Netns(args.netns.clone(), e.to_string()))?;
    // One thread: every connection is made from the namespace this thread entered.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ForwardError::Runtime)?;
    rt.block_on(async move {
        let mut tasks = vec![];
        for (l, target) in listeners {
            let listener = match tokio::net::TcpListener::from_std(l) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(error = %e, "listener");
                    continue;
                }
            };
            tasks.push(tokio::spawn(accept_loop(listener, target)));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    Ok(())
}

async fn accept_loop(listener: tokio::net::TcpListener, target: SocketAddr) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            match tokio::net::TcpStream::connect(target).await {
                Ok(mut outbound) => {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
                Err(e) => tracing::debug!(%target, error = %e, "forward target not reachable"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets() {
        assert!(parse_pair("127.0.0.1:8000=127.0.0.1:8000").is_ok());
        assert!(parse_pair("127.0.0.1:8000=198.18.1.1:8080").is_err());
        assert!(parse_pair("127.0.0.1:8000").is_err());
    }
}
