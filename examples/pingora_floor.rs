//! The floor of Atrium's stack for `make bench-gateway`: the smallest pingora reverse proxy —
//! the same pingora version, features and allocator as `atrium gateway`, one `upstream_peer`
//! returning one fixed HTTP/1.1 backend, nothing else (no routing table, no metrics, no logs).
//! Whatever `atrium gateway` costs per request above this binary is Atrium's own.
//!
//! `pingora_floor --listen 127.0.0.1:8081 --upstream 127.0.0.1:8080 --threads 1`

use async_trait::async_trait;
use clap::Parser;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Command line of the floor proxy.
#[derive(Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long)]
    listen: std::net::SocketAddr,
    /// The one backend every request goes to.
    #[arg(long)]
    upstream: std::net::SocketAddr,
    /// Worker threads (as `atrium gateway --threads`).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// A proxy whose only decision is the fixed upstream.
struct Floor {
    upstream: std::net::SocketAddr,
}

#[async_trait]
impl ProxyHttp for Floor {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

fn main() {
    let args = Args::parse();
    let conf = ServerConf {
        threads: args.threads,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = http_proxy_service(
        &server.configuration,
        Floor {
            upstream: args.upstream,
        },
    );
    proxy.add_tcp(&args.listen.to_string());
    server.add_service(proxy);
    server.run_forever();
}
