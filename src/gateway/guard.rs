//! Slow and idle clients: a deadline for each request header, an idle keep-alive timeout and a
//! per-process connection limit, wrapped around pingora's HTTP application.
//!
//! pingora bounds each single read of a request header (60 s), not the whole header, so a
//! client sending one byte a second holds a connection forever. [`Guarded`] wraps every
//! accepted stream (after TLS, so it sees plaintext) and watches what is read and written:
//!
//! - a new connection, and a kept-alive one after each response, is *idle* until the next
//!   request's first byte; it may stay so for `--idle-timeout` (a new connection for
//!   `--header-read-timeout`);
//! - from the first byte the whole header (up to the blank line) must arrive within
//!   `--header-read-timeout`;
//! - then reading the body is pingora's business again (its per-read timeout).
//!
//! A deadline that passes fails the read, and pingora closes the connection. The request line
//! is checked on the way too ([`RequestLine`]): a space or control byte in the target is 400. An HTTP/2
//! connection (its preface, or ALPN `h2`) is left to pingora's HTTP/2 timeouts. Beyond
//! `--max-connections` open connections a new one is closed at once. Every close is counted in
//! `atrium_gateway_connections_closed_total{reason}`.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    ALPN, GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    Stream, TimingDigest, UniqueID, UniqueIDType,
};
use pingora::server::ShutdownWatch;
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The limits, from the gateway's flags.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Time allowed for a request header, from its first byte (and for a new connection's
    /// first request, from the connection).
    pub header_read: Duration,
    /// Time a kept-alive connection may wait for its next request.
    pub idle: Duration,
    /// Open connections allowed; more are closed at once.
    pub max_connections: usize,
}

/// Connection metrics.
#[derive(Clone)]
pub struct GuardMetrics {
    closed: IntCounterVec,
    open: IntGauge,
}

impl GuardMetrics {
    /// Registers `atrium_gateway_connections_closed_total{reason}` and
    /// `atrium_gateway_connections_open`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let closed = IntCounterVec::new(
            Opts::new(
                "atrium_gateway_connections_closed_total",
                "Client connections the gateway closed: header_timeout, idle_timeout, limit",
            ),
            &["reason"],
        )?;
        for reason in ["header_timeout", "idle_timeout", "limit"] {
            closed.with_label_values(&[reason]);
        }
        let open = IntGauge::new(
            "atrium_gateway_connections_open",
            "Client connections open now",
        )?;
        registry.register(Box::new(closed.clone()))?;
        registry.register(Box::new(open.clone()))?;
        Ok(Self { closed, open })
    }
}

/// pingora's HTTP application behind the limits.
pub struct GuardedApp<A> {
    inner: Arc<A>,
    limits: Limits,
    open: Arc<AtomicUsize>,
    metrics: GuardMetrics,
}

impl<A> GuardedApp<A> {
    /// Wraps `inner`.
    pub fn new(inner: A, limits: Limits, metrics: GuardMetrics) -> Self {
        Self {
            inner: Arc::new(inner),
            limits,
            open: Arc::new(AtomicUsize::new(0)),
            metrics,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for GuardedApp<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let slot = Slot::take(self.open.clone(), self.metrics.open.clone());
        if slot.count > self.limits.max_connections {
            self.metrics.closed.with_label_values(&["limit"]).inc();
            return None;
        }
        let h2 = matches!(stream.selected_alpn_proto(), Some(ALPN::H2));
        let guarded = Guarded {
            inner: stream,
            phase: if h2 { Phase::Off } else { Phase::New },
            deadline: Box::pin(tokio::time::sleep(self.limits.header_read)),
            deadline_at: Instant::now() + self.limits.header_read,
            limits: self.limits,
            line_start: false,
            line: RequestLine::default(),
            metrics: self.metrics.clone(),
            _slot: slot,
        };
        // The inner application keeps the connection for all its kept-alive requests and
        // hands nothing back; the slot is released when the stream is dropped.
        self.inner.process_new(Box::new(guarded), shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await;
    }
}

/// Counts a connection in while it lives.
#[derive(Debug)]
struct Slot {
    open: Arc<AtomicUsize>,
    gauge: IntGauge,
    count: usize,
}

impl Slot {
    fn take(open: Arc<AtomicUsize>, gauge: IntGauge) -> Self {
        let count = open.fetch_add(1, Ordering::AcqRel) + 1;
        gauge.inc();
        Self { open, gauge, count }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
        self.gauge.dec();
    }
}

/// Where a connection is in its request cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Accepted, nothing read yet (the header deadline runs from the accept).
    New,
    /// A response went out; waiting for the next request (the idle deadline runs).
    Idle,
    /// Reading a request header (the header deadline runs from its first byte).
    Header,
    /// The header is complete; pingora's own timeouts apply.
    Body,
    /// HTTP/2: pingora's own timeouts apply.
    Off,
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";
/// A `101 Switching Protocols` answer: the connection is no longer HTTP/1.
const SWITCHING: &[u8] = b"HTTP/1.1 101";

/// Checks a request line as it streams by. A space or control byte inside the request target
/// (a third space, a byte below 0x20 other than the line's `\r`, or DEL) makes pingora's parser
/// percent-encode the target and forward it; instead every `/` after it on the line is
/// spoiled, so the version no longer parses and pingora answers 400 (RFC 9112 §3.2).
#[derive(Clone, Copy, Debug, Default)]
struct RequestLine {
    spaces: u8,
    done: bool,
    spoiled: bool,
}

impl RequestLine {
    fn check(&mut self, b: &mut u8) {
        if self.done {
            return;
        }
        match *b {
            b'\n' => {
                self.done = true;
                return;
            }
            b' ' => {
                self.spaces = self.spaces.saturating_add(1);
                self.spoiled |= self.spaces > 2;
            }
            b'\r' => {}
            c if c < 0x20 || c == 0x7f => self.spoiled = true,
            _ => {}
        }
        if self.spoiled && *b == b'/' {
            *b = b'!';
        }
    }
}

/// A client stream whose request headers must arrive in time.
struct Guarded {
    inner: Stream,
    phase: Phase,
    /// The timer; it may be armed earlier than `deadline_at` (then it re-arms when it fires),
    /// never later. Moving it on every request would cost a timer-wheel update per request.
    deadline: Pin<Box<Sleep>>,
    /// When the current phase's time is up.
    deadline_at: Instant,
    limits: Limits,
    /// Whether the bytes read so far end a line (a second line end in a row ends the header;
    /// `\r` is ignored, so `\r\n\r\n` and bare `\n\n` both count).
    line_start: bool,
    /// The request line being read.
    line: RequestLine,
    metrics: GuardMetrics,
    _slot: Slot,
}

impl std::fmt::Debug for Guarded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guarded")
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

impl Guarded {
    /// Follows the bytes just read through the phases.
    fn observe(&mut self, bytes: &mut [u8]) {
        if bytes.is_empty() {
            return;
        }
        match self.phase {
            Phase::New if bytes.starts_with(H2_PREFACE) => {
                self.phase = Phase::Off;
                return;
            }
            Phase::Idle => {
                self.phase = Phase::Header;
                self.line = RequestLine::default();
                self.arm(Instant::now() + self.limits.header_read);
            }
            Phase::New => {
                self.phase = Phase::Header;
                self.line = RequestLine::default();
            }
            Phase::Header => {}
            Phase::Body | Phase::Off => return,
        }
        for b in bytes.iter_mut() {
            self.line.check(b);
            match *b {
                b'\n' if self.line_start => {
                    self.phase = Phase::Body;
                    self.line_start = false;
                    return;
                }
                b'\n' => self.line_start = true,
                b'\r' => {}
                _ => self.line_start = false,
            }
        }
    }

    /// Follows a write: a response going out makes the next read the next request's; a
    /// `101` hands the connection to another protocol.
    fn wrote(&mut self, first: &[u8]) {
        if self.phase != Phase::Body {
            return;
        }
        if first.starts_with(SWITCHING) {
            self.phase = Phase::Off;
            return;
        }
        self.phase = Phase::Idle;
        self.arm(Instant::now() + self.limits.idle);
    }

    /// Sets the phase's deadline; the timer moves only when it would fire too late.
    fn arm(&mut self, at: Instant) {
        self.deadline_at = at;
        if self.deadline.deadline() > at {
            self.deadline.as_mut().reset(at);
        }
    }

    /// Whether the phase's deadline passed; a timer that fired early is re-armed.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if self.deadline.as_mut().poll(cx).is_pending() {
                return false;
            }
            if Instant::now() >= self.deadline_at {
                return true;
            }
            let at = self.deadline_at;
            self.deadline.as_mut().reset(at);
        }
    }

    fn guarding(&self) -> bool {
        matches!(self.phase, Phase::New | Phase::Idle | Phase::Header)
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                self.observe(&mut buf.filled_mut()[before..]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending if self.guarding() && self.expired(cx) => {
                let reason = if self.phase == Phase::Idle {
                    "idle_timeout"
                } else {
                    "header_timeout"
                };
                self.metrics.closed.with_label_values(&[reason]).inc();
                self.phase = Phase::Off;
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the client took too long ({reason})"),
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.wrote(data);
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.wrote(
                bufs.iter()
                    .find(|b| !b.is_empty())
                    .map_or(&[][..], |b| &b[..]),
            );
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for Guarded {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await;
    }
}

impl UniqueID for Guarded {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Guarded {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for Guarded {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for Guarded {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest);
    }
}

impl GetSocketDigest for Guarded {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest);
    }
}

#[async_trait]
impl Peek for Guarded {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spoil(line: &[u8]) -> Vec<u8> {
        let mut check = RequestLine::default();
        let mut out = line.to_vec();
        for b in &mut out {
            check.check(b);
        }
        out
    }

    #[test]
    fn bad_request_targets_lose_their_version() {
        // (request line, spoiled)
        let cases: [(&[u8], bool); 7] = [
            (b"GET /a/b?x=1 HTTP/1.1\r\nHost: h\r\n", false),
            (b"GET /a b HTTP/1.1\r\n", true),
            (b"GET /a\x01b HTTP/1.1\r\n", true),
            (b"GET /a\tb HTTP/1.1\r\n", true),
            (b"GET /a\x7f HTTP/1.1\r\n", true),
            // Only the request line is looked at: header values are pingora's to judge.
            (b"GET / HTTP/1.1\r\nX-A: a b c d\r\n", false),
            (b"GET /%01 HTTP/1.1\r\n", false),
        ];
        for (line, spoiled) in cases {
            let out = spoil(line);
            let version_intact = out.windows(5).any(|w| w == b"HTTP/");
            assert_eq!(
                !version_intact,
                spoiled,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }
}
