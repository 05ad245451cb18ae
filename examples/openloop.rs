//! The open-loop load generator of `make bench-gateway`: GET requests at a fixed rate over
//! HTTP/1.1 keep-alive connections, latency measured from when each request was *due*
//! (so a slow response that delays the next one counts against the server, not hidden by
//! it: no coordinated omission, as in wrk2).
//!
//! Why not vegeta: on a core shared with the backend, vegeta's own scheduling put the p50 of
//! a backend that answers in about 10 µs at 0.2–0.3 ms and its p99 at 1–3 ms, more than
//! every proxy adds. Here each connection is a thread with a blocking socket that sleeps
//! until its next request is due, with the kernel's timer slack at 1 µs.
//!
//! `openloop --url http://127.0.0.1:8080/ --rate 4000 --seconds 5 [--connections 8]
//! [--header 'Authorization: Bearer …'] [--ca-file cert.pem]` prints one JSON object:
//! requests, failed, achieved rate, p50/p99/p99.9 in milliseconds.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;

/// Command line of the open-loop generator.
#[derive(Parser)]
struct Args {
    /// `http://` or `https://` URL on a loopback address.
    #[arg(long)]
    url: String,
    /// Requests per second, spread evenly over the connections.
    #[arg(long)]
    rate: f64,
    /// How long to send.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Keep-alive connections (each its own thread).
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Extra request header, `Name: value`; repeatable.
    #[arg(long)]
    header: Vec<String>,
    /// PEM certificate to trust for https:// (the benchmark's self-signed one).
    #[arg(long)]
    ca_file: Option<std::path::PathBuf>,
}

/// A loopback URL, split.
struct Target {
    tls: bool,
    addr: SocketAddr,
    request: Vec<u8>,
}

fn target(args: &Args) -> Result<Target, String> {
    let (tls, rest) = match args.url.split_once("://") {
        Some(("http", rest)) => (false, rest),
        Some(("https", rest)) => (true, rest),
        _ => return Err(format!("{}: not an http(s) URL", args.url)),
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let addr: SocketAddr = authority
        .parse()
        .map_err(|e| format!("{authority}: not an IP:port ({e})"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "{addr}: refusing to send to a non-loopback address"
        ));
    }
    let path = if path.is_empty() { "/" } else { path };
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\n");
    for h in &args.header {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    Ok(Target {
        tls,
        addr,
        request: request.into_bytes(),
    })
}

/// Reads one response; its status. Content-Length or chunked bodies.
fn read_response(stream: &mut impl Read, buf: &mut Vec<u8>) -> std::io::Result<u16> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_owned());
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(bad("connection closed"));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| bad("head not UTF-8"))?;
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    let lower = head.to_ascii_lowercase();
    let length = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let chunked = lower.contains("transfer-encoding: chunked");
    let complete = |b: &[u8]| match (length, chunked) {
        (Some(n), _) => b.len() >= head_end + n,
        (None, true) => b[head_end..].windows(5).any(|w| w == b"0\r\n\r\n"),
        (None, false) => true,
    };
    while !complete(buf) {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(bad("connection closed in the body"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let used = match length {
        Some(n) => head_end + n,
        None => buf.len(),
    };
    buf.drain(..used);
    Ok(status)
}

fn connect(
    t: &Target,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> std::io::Result<Box<dyn ReadWrite>> {
    let tcp = TcpStream::connect(t.addr)?;
    tcp.set_nodelay(true)?;
    match tls {
        None => Ok(Box::new(tcp)),
        Some(cfg) => {
            let name = rustls::pki_types::ServerName::IpAddress(t.addr.ip().into());
            let conn =
                rustls::ClientConnection::new(cfg.clone(), name).map_err(std::io::Error::other)?;
            Ok(Box::new(rustls::StreamOwned::new(conn, tcp)))
        }
    }
}

trait ReadWrite: Read + Write + Send {}
impl<T: Read + Write + Send> ReadWrite for T {}

/// One connection's run: its latencies in µs and its failures.
fn worker(
    t: &Target,
    tls: Option<&Arc<rustls::ClientConfig>>,
    start: Instant,
    first: Duration,
    interval: Duration,
    until: Duration,
) -> (Vec<u32>, u64) {
    // Wake up on time: the default timer slack (50 µs) would delay every sleep by up to that.
    let _ = std::fs::write("/proc/thread-self/timerslack_ns", "1000");
    let (mut latencies, mut failed) = (Vec::new(), 0u64);
    let mut reported = false;
    let mut stream = None;
    let mut buf = Vec::with_capacity(8192);
    let mut due = first;
    while due < until {
        let now = start.elapsed();
        if due > now {
            std::thread::sleep(due - now);
        }
        if stream.is_none() {
            buf.clear();
            stream = connect(t, tls).ok();
        }
        let outcome = match stream.as_mut() {
            Some(s) => s
                .write_all(&t.request)
                .and_then(|()| read_response(s, &mut buf))
                .map_err(|e| e.to_string()),
            None => Err("connect failed".to_owned()),
        };
        let ok = matches!(outcome, Ok(200));
        if !ok && !reported {
            // The first failure of each connection, so a broken setup says why.
            eprintln!("openloop: {:?}", outcome);
            reported = true;
        }
        if ok {
            let took = start.elapsed().saturating_sub(due);
            latencies.push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
        } else {
            failed += 1;
            stream = None;
        }
        due += interval;
    }
    (latencies, failed)
}

fn tls_config(ca: &std::path::Path) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| format!("{}: {e}", ca.display()))? {
        let cert = cert.map_err(|e| format!("{}: {e}", ca.display()))?;
        roots.add(cert).map_err(|e| e.to_string())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

fn quantile_ms(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let k = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    f64::from(sorted[k - 1]) / 1000.0
}

fn run(args: &Args) -> Result<String, String> {
    if !(args.rate > 0.0 && args.seconds > 0.0 && args.connections > 0) {
        return Err("--rate, --seconds and --connections must be positive".into());
    }
    let t = Arc::new(target(args)?);
    let tls = match (t.tls, &args.ca_file) {
        (true, Some(ca)) => Some(tls_config(ca)?),
        (true, None) => return Err("https:// needs --ca-file".into()),
        (false, _) => None,
    };
    let interval = Duration::from_secs_f64(args.connections as f64 / args.rate);
    let step = Duration::from_secs_f64(1.0 / args.rate);
    let until = Duration::from_secs_f64(args.seconds);
    // Connections start a little later, staggered so the requests interleave evenly.
    let start = Instant::now() + Duration::from_millis(50);
    let handles: Vec<_> = (0..args.connections)
        .map(|k| {
            let (t, tls) = (t.clone(), tls.clone());
            let first = step * u32::try_from(k).unwrap_or(0);
            std::thread::spawn(move || worker(&t, tls.as_ref(), start, first, interval, until))
        })
        .collect();
    let (mut all, mut failed) = (Vec::new(), 0);
    for h in handles {
        let (l, f) = h
            .join()
            .map_err(|_| "a connection thread panicked".to_owned())?;
        all.extend(l);
        failed += f;
    }
    all.sort_unstable();
    let sent = all.len() as u64 + failed;
    Ok(format!(
        "{{\"rate\": {}, \"requests\": {sent}, \"failed\": {failed}, \"achieved\": {:.1}, \"p50\": {:.4}, \"p99\": {:.4}, \"p999\": {:.4}}}",
        args.rate,
        sent as f64 / args.seconds,
        quantile_ms(&all, 0.5),
        quantile_ms(&all, 0.99),
        quantile_ms(&all, 0.999),
    ))
}

fn main() {
    let args = Args::parse();
    match run(&args) {
        Ok(json) => println!("{json}"),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    }
}
