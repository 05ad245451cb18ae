//! Backend faults and a rolling restart, in file mode on loopback: a backend that hangs, answers
//! garbage, trickles one byte per second or resets mid-body gets the right answer (504, 502, a
//! cut-off response), while another route keeps serving; file descriptors and memory stay
//! bounded. Two gateway replicas restarted one by one behind a client that retries refused
//! connections fail no request.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

/// What a faulty backend does with one connection.
type Behaviour = fn(TcpStream);

/// A loopback backend that treats every connection with `behaviour` (each on its own thread).
fn backend(behaviour: Behaviour) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || behaviour(conn));
        }
    });
    port
}

fn read_request(conn: &mut TcpStream) {
    let mut buf = [0u8; 4096];
    let _ = conn.read(&mut buf);
}

fn hangs(mut conn: TcpStream) {
    read_request(&mut conn);
    std::thread::sleep(Duration::from_secs(60));
}

fn garbage(mut conn: TcpStream) {
    read_request(&mut conn);
    let _ = conn.write_all(b"SSH-2.0-OpenSSH_9.2\r\nnot http at all\r\n\r\n");
}

fn trickles(mut conn: TcpStream) {
    read_request(&mut conn);
    let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n");
    for _ in 0..30 {
        if conn.write_all(b"x").is_err() {
            return;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn resets(mut conn: TcpStream) {
    read_request(&mut conn);
    let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
    let _ = conn.write_all(&[b'x'; 100]);
    std::thread::sleep(Duration::from_millis(20));
    let _ = socket2::SockRef::from(&conn).set_linger(Some(Duration::ZERO));
}

fn service(name: &str, port: u16) -> String {
    format!(
        "apiVersion: atrium.dev/v1alpha1\nkind: Microservice\nmetadata: {{name: {name}}}\nspec: {{ports: [{{name: http, port: {port}}}], endpoints: [{{address: 127.0.0.1}}]}}\n---\n"
    )
}

fn rule(prefix: &str, to: &str) -> String {
    format!(
        "  - matches: [{{path: {{type: PathPrefix, value: {prefix}}}}}]\n    backends: [{{microservice: {to}}}]\n    timeout: 2s\n"
    )
}

/// What a client got: the status (0: nothing), whether the body was complete, and the time.
#[derive(Debug)]
struct Outcome {
    status: u16,
    complete: bool,
    took: Duration,
}

/// One GET on a fresh connection, read until the gateway closes it.
fn get(port: u16, path: &str) -> Result<Outcome, std::io::Error> {
    let start = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: shop.local\r\nConnection: close\r\n\r\n"
    )?;
    let mut resp = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => resp.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&resp);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let length = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(str::to_owned)
        })
        .and_then(|v| v.trim().parse::<usize>().ok());
    Ok(Outcome {
        status,
        complete: length.is_none_or(|n| body.len() == n),
        took: start.elapsed(),
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// `n` requests to the healthy route: latencies (sorted); panics on any failure.
fn healthy_latencies(port: u16, n: usize) -> Vec<Duration> {
    let mut all: Vec<Duration> = (0..n)
        .map(|_| {
            let o = get(port, "/ok/x").expect("the healthy route answers");
            assert_eq!(
                (o.status, o.complete),
                (200, true),
                "the healthy route is unaffected"
            );
            o.took
        })
        .collect();
    all.sort();
    all
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(Iterator::count)
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn backend_faults_get_the_right_answer_and_leave_other_routes_alone() {
    let ok = EchoBackend::start("127.0.0.1", "ok");
    let faults: [(&str, Behaviour); 4] = [
        ("hang", hangs),
        ("garbage", garbage),
        ("trickle", trickles),
        ("reset", resets),
    ];
    let dir = temp_dir("gw-faults");
    let mut yaml = service("ok", ok.port);
    let mut rules = rule("/ok", "ok");
    for (name, behaviour) in faults {
        yaml.push_str(&service(name, backend(behaviour)));
        rules.push_str(&rule(&format!("/{name}"), name));
    }
    yaml.push_str(&format!(
        "apiVersion: atrium.dev/v1alpha1\nkind: GatewayRoute\nmetadata: {{name: faults}}\nspec:\n  rules:\n{rules}"
    ));
    std::fs::write(dir.join("faults.yaml"), yaml).expect("write config");
    let (gateway, port, _) = start_gateway(&["--config-dir", dir.to_str().expect("utf-8")], &[]);
    let pid = gateway.0.id();

    let baseline = healthy_latencies(port, 200);
    let (fds_before, rss_before) = (fd_count(pid), rss_kib(pid));
    let mut report = format!(
        "gateway faults (file mode, loopback; 20 concurrent requests to the faulty route, 200 sequential ones to a healthy route meanwhile)\n\
         baseline healthy route: p50 {:.2?}, p99 {:.2?}; {fds_before} fds, {rss_before} KiB RSS\n",
        percentile(&baseline, 0.5),
        percentile(&baseline, 0.99)
    );
    for (name, _) in faults {
        let path = format!("/{name}/x");
        let clients: Vec<_> = (0..20)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || get(port, &path))
            })
            .collect();
        let during = healthy_latencies(port, 200);
        let mut peak_fds = fd_count(pid);
        let outcomes: Vec<Outcome> = clients
            .into_iter()
            .map(|c| {
                peak_fds = peak_fds.max(fd_count(pid));
                c.join()
                    .expect("client thread")
                    .expect("the gateway accepts")
            })
            .collect();
        for o in &outcomes {
            match name {
                // The rule's 2 s timeout is the whole request's budget.
                "hang" => assert_eq!(o.status, 504, "{name}: {o:?}"),
                "garbage" => assert_eq!(o.status, 502, "{name}: {o:?}"),
                // Headers came in time, the body did not: the response is cut off at the
                // deadline, never completed with gateway bytes.
                "trickle" => {
                    assert!(o.status == 200 && !o.complete, "{name}: {o:?}");
                    assert!(o.took < Duration::from_secs(10), "{name}: {o:?}");
                }
                _ => assert!(o.status == 200 && !o.complete, "{name}: {o:?}"),
            }
        }
        report.push_str(&format!(
            "{name:>8}: answered {:?}; healthy route p50 {:.2?}, p99 {:.2?}; peak {peak_fds} fds, {} KiB RSS\n",
            outcomes
                .iter()
                .map(|o| if o.complete { o.status.to_string() } else { format!("{} cut off", o.status) })
                .collect::<std::collections::BTreeSet<_>>(),
            percentile(&during, 0.5),
            percentile(&during, 0.99),
            rss_kib(pid)
        ));
    }
    // Nothing leaks: the connections of every fault are gone again.
    let fds_after = wait_until(
        "the gateway's file descriptors to return to their baseline",
        Duration::from_secs(30),
        || {
            let n = fd_count(pid);
            (n <= fds_before + 4).then_some(n)
        },
    );
    let rss_after = rss_kib(pid);
    assert!(
        rss_after < rss_before + 64 * 1024,
        "memory stays bounded: {rss_before} KiB -> {rss_after} KiB"
    );
    report.push_str(&format!("after: {fds_after} fds, {rss_after} KiB RSS\n"));
    write_report("gateway-faults.txt", &report);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Starts a gateway on fixed ports (a restarted replica keeps its address).
fn gateway_on(dir: &Path, port: u16, admin: u16) -> Proc {
    let proc = Proc(
        Command::new(atrium_bin())
            .args(["gateway", "--config-dir"])
            .arg(dir)
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--admin-listen",
                &format!("127.0.0.1:{admin}"),
            ])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("gateway starts"),
    );
    wait_until("gateway ready", Duration::from_secs(30), || {
        http_get(admin, "/readyz").ok().filter(|(s, _)| *s == 200)
    });
    proc
}

#[test]
fn a_rolling_restart_of_two_replicas_fails_no_request() {
    let backend = EchoBackend::start_with_delay("127.0.0.1", "slowish", Duration::from_millis(20));
    let dir = temp_dir("gw-rolling");
    std::fs::write(
        dir.join("r.yaml"),
        format!(
            "{}apiVersion: atrium.dev/v1alpha1\nkind: GatewayRoute\nmetadata: {{name: r}}\nspec: {{rules: [{{backends: [{{microservice: slowish}}]}}]}}\n",
            service("slowish", backend.port)
        ),
    )
    .expect("write config");
    let ports = [(free_port(), free_port()), (free_port(), free_port())];
    let mut replicas: Vec<Proc> = ports
        .iter()
        .map(|(p, a)| gateway_on(&dir, *p, *a))
        .collect();

    // Clients spread requests over both replicas and move to the other one when a connection
    // is refused or closed before an answer, as a load balancer's health checking would.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let stop = stop.clone();
            let ports = [ports[0].0, ports[1].0];
            std::thread::spawn(move || {
                let (mut ok, mut failed, mut moved) = (0usize, Vec::new(), 0usize);
                let mut i = c;
                while !stop.load(std::sync::atomic::Ordering::Acquire) {
                    i += 1;
                    let first = ports[i % 2];
                    let answer = match get(first, "/x") {
                        Ok(o) if o.status != 0 => Ok(o),
                        _ => {
                            moved += 1;
                            get(ports[(i + 1) % 2], "/x")
                        }
                    };
                    match answer {
                        Ok(o) if o.status == 200 && o.complete => ok += 1,
                        other => failed.push(format!("{other:?}")),
                    }
                }
                (ok, failed, moved)
            })
        })
        .collect();
    wait_until(
        "traffic through both replicas",
        Duration::from_secs(10),
        || (backend.received() > 50).then_some(()),
    );
    let started = Instant::now();
    for (i, (p, a)) in ports.iter().enumerate() {
        signal(replicas[i].0.id(), "TERM");
        let status = wait_until(
            "the replica to drain and exit",
            Duration::from_secs(30),
            || replicas[i].0.try_wait().ok().flatten(),
        );
        assert!(status.success(), "graceful exit: {status:?}");
        replicas[i] = gateway_on(&dir, *p, *a);
    }
    let restart_took = started.elapsed();
    let before = backend.received();
    wait_until("traffic after the restart", Duration::from_secs(10), || {
        (backend.received() > before + 50).then_some(())
    });
    stop.store(true, std::sync::atomic::Ordering::Release);
    let (mut ok, mut failed, mut moved) = (0, Vec::new(), 0);
    for c in clients {
        let (o, f, m) = c.join().expect("client thread");
        ok += o;
        failed.extend(f);
        moved += m;
    }
    write_report(
        "gateway-rolling-restart.txt",
        &format!(
            "two gateway replicas restarted one by one (SIGTERM, drain, start) in {restart_took:.1?}: {ok} requests answered, {} failed, {moved} moved to the other replica\n",
            failed.len()
        ),
    );
    assert!(failed.is_empty(), "failed requests: {failed:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
