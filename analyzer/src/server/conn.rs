//! Connection hygiene: the accept loop under [`super::run`].
//!
//! `axum::serve` reads headers with no deadline and accepts connections
//! without bound, so a few thousand clients that each send half a request
//! line hold every file descriptor and lock everyone else out. Here each
//! connection is served by hyper's HTTP/1 builder with a timer, and costs
//! a bounded amount for a bounded time:
//!
//! - headers must arrive within `header_read_timeout`, which hyper also
//!   applies while a kept-alive connection waits for its next request, so
//!   it is the idle timeout too;
//! - a response whose write makes no progress for `write_timeout` (a
//!   client that never reads) closes the connection;
//! - bodies and handlers are bounded by the request timeout (`shed.rs`);
//! - connections are capped in total and per peer address. Past a cap the
//!   connection is accepted and closed at once, and counted: leaving it in
//!   the kernel's backlog would stall honest clients behind it;
//! - one address's requests, over all its connections, are paced and
//!   capped in flight, and each connection's buffers (hyper's and the
//!   kernel's send buffer) are bounded, so that pipelining on thousands of
//!   connections buys one host a share of the server, not all of it.
//!
//! Only HTTP/1.1 is served (agents and browsers use it), so there are no
//! HTTP/2 keep-alive settings to bound.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::{IntCounterVec, IntGauge};
use tower::ServiceExt;

/// The bounds on connections, from `serve`'s settings.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Connections open at once, all peers together.
    pub max_total: usize,
    /// Connections open at once from one peer address.
    pub max_per_address: usize,
    /// Requests in flight from one peer address, over all its
    /// connections; past it, a 503 at once. One host pipelining costly
    /// requests on thousands of connections gets this share of the
    /// server, not all of it.
    pub max_requests_per_address: usize,
    /// Requests per second one peer address may start, over all its
    /// connections, with as many again in a burst; past it a request
    /// waits its turn. A host that pipelines thousands of requests on
    /// each of thousands of connections is paced, at no cost while it
    /// waits, rather than answered as fast as the cores allow.
    pub request_rate_per_address: f64,
    /// Time for a request's headers to arrive, and for an idle kept-alive
    /// connection to send its next request.
    pub header_read_timeout: Duration,
    /// Time a response's write may make no progress.
    pub write_timeout: Duration,
    /// TLS, when `serve` terminates it; the handshake must end within
    /// `header_read_timeout`.
    pub tls: Option<super::tls::Tls>,
}

impl ConnectionLimits {
    /// `https` when `serve` terminates TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_total: crate::config::DEFAULT_MAX_CONNECTIONS,
            max_per_address: crate::config::DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
            max_requests_per_address: crate::config::DEFAULT_MAX_REQUESTS_PER_ADDRESS,
            request_rate_per_address: crate::config::DEFAULT_REQUEST_RATE_PER_ADDRESS,
            header_read_timeout: crate::config::DEFAULT_HEADER_READ_TIMEOUT.0,
            write_timeout: crate::config::DEFAULT_WRITE_TIMEOUT.0,
            tls: None,
        }
    }
}

/// What `/metrics` shows of connections.
#[derive(Clone)]
pub struct ConnectionMeters {
    pub open: IntGauge,
    /// Connections closed at accept, by the cap that refused them.
    pub refused: IntCounterVec,
    /// Connections closed by a deadline: headers, idle or a stalled write.
    pub timed_out: prometheus::IntCounter,
}

/// The caps' labels on `heaptide_http_connections_refused_total`.
pub const REFUSAL_REASONS: [&str; 2] = ["per_address", "total"];

/// Open connections, in total and per peer address.
#[derive(Default)]
struct Ledger {
    total: usize,
    by_address: HashMap<IpAddr, Address>,
}

/// One peer address's connections, and the requests its connections may
/// have in flight together.
struct Address {
    conns: usize,
    requests: Arc<tokio::sync::Semaphore>,
    pace: Arc<Pacer>,
}

/// Paces one address's requests: each reserves the next free moment and
/// sleeps until then, once. Reservation rather than retrying a token
/// bucket, so that thousands of waiting connections do not all wake at
/// each refill.
struct Pacer {
    next: Mutex<std::time::Instant>,
    interval: Duration,
    burst: Duration,
}

impl Pacer {
    fn new(per_second: f64) -> Pacer {
        let interval = Duration::from_secs_f64(1.0 / per_second.max(1e-3));
        let burst = interval.mul_f64(per_second.max(1.0));
        Pacer {
            next: Mutex::new(std::time::Instant::now()),
            interval,
            burst,
        }
    }

    /// How long the next request must wait for its turn.
    fn reserve(&self) -> Duration {
        let now = std::time::Instant::now();
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let earliest = now.checked_sub(self.burst).unwrap_or(now);
        if *next < earliest {
            *next = earliest;
        }
        let at = *next;
        *next += self.interval;
        at.saturating_duration_since(now)
    }
}

/// One admitted connection's place in the ledger, given back on drop.
struct Slot {
    ledger: Arc<Mutex<Ledger>>,
    ip: IpAddr,
    open: IntGauge,
    /// The address's requests in flight, and their pace.
    requests: Arc<tokio::sync::Semaphore>,
    pace: Arc<Pacer>,
}

impl Slot {
    /// A place for a connection from `ip`, or the cap that refuses it.
    fn take(
        ledger: &Arc<Mutex<Ledger>>,
        ip: IpAddr,
        limits: &ConnectionLimits,
        open: &IntGauge,
    ) -> Result<Slot, &'static str> {
        // A poisoned ledger still counts: it is two integers and a map
        // that no panic can leave half-updated.
        let mut l = ledger.lock().unwrap_or_else(|p| p.into_inner());
        if l.total >= limits.max_total {
            return Err("total");
        }
        let a = l.by_address.entry(ip).or_insert_with(|| Address {
            conns: 0,
            requests: Arc::new(tokio::sync::Semaphore::new(limits.max_requests_per_address)),
            pace: Arc::new(Pacer::new(limits.request_rate_per_address)),
        });
        if a.conns >= limits.max_per_address {
            return Err("per_address");
        }
        a.conns += 1;
        let (requests, pace) = (a.requests.clone(), a.pace.clone());
        l.total += 1;
        open.inc();
        Ok(Slot {
            ledger: ledger.clone(),
            ip,
            open: open.clone(),
            requests,
            pace,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut l = self.ledger.lock().unwrap_or_else(|p| p.into_inner());
        l.total -= 1;
        if let Some(a) = l.by_address.get_mut(&self.ip) {
            a.conns -= 1;
            if a.conns == 0 {
                l.by_address.remove(&self.ip);
            }
        }
        self.open.dec();
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets
/// requests in flight finish for up to `drain`.
pub(super) async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    limits: ConnectionLimits,
    meters: ConnectionMeters,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // What one connection may buffer, read and write: hyper's default
        // of about 400 KB, times thousands of connections, is gigabytes.
        .max_buf_size(MAX_CONNECTION_BUFFER);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors or a connection reset before it
                    // was taken: pause so that a full table is not a busy
                    // loop, then go on.
                    tracing::debug!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Small answers go out at once, not after Nagle's delay.
        let _ = stream.set_nodelay(true);
        // The kernel grows a socket's send buffer to 4 MiB by itself,
        // whether or not the client reads: thousands of non-reading
        // clients would hold gigabytes, and fill slowly enough to outlast
        // the write deadline. A fixed buffer bounds both (and still sends
        // a few MB/s at a 50 ms round trip).
        let _ =
            nix::sys::socket::setsockopt(&stream, nix::sys::socket::sockopt::SndBuf, &SEND_BUFFER);
        let slot = match Slot::take(&ledger, peer.ip(), &limits, &meters.open) {
            Ok(s) => s,
            Err(reason) => {
                meters.refused.with_label_values(&[reason]).inc();
                continue;
            }
        };
        let one = One {
            builder: builder.clone(),
            service: service(&router, peer, slot.requests.clone(), slot.pace.clone()),
            watcher: graceful.watcher(),
            write_timeout: limits.write_timeout,
            timed_out: meters.timed_out.clone(),
        };
        let (tls, handshake) = (limits.tls.clone(), limits.header_read_timeout);
        tokio::spawn(async move {
            let _slot = slot;
            let Some(tls) = tls else {
                return one.serve(stream).await;
            };
            match tokio::time::timeout(handshake, tls.acceptor.accept(stream)).await {
                Ok(Ok(stream)) => one.serve(stream).await,
                Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                Err(_) => one.timed_out.inc(),
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open {DRAIN:?} after shutdown; closing them");
    }
}

/// Descriptors kept back from connections for the store, webhooks and
/// scrapes.
const RESERVED_FDS: usize = 256;

/// Raises the soft limit on open files to the hard limit (many systems
/// start services at 1,024), and returns `max_total` held below it, so
/// that a full table of connections still leaves descriptors for the store.
pub fn fit_to_fd_limit(max_total: usize) -> usize {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return max_total;
    };
    let soft = if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        tracing::info!("raised the open-file limit from {soft} to {hard}");
        hard
    } else {
        soft
    };
    let room = usize::try_from(soft)
        .unwrap_or(usize::MAX)
        .saturating_sub(RESERVED_FDS)
        .max(16);
    if room < max_total {
        tracing::warn!(
            "max_connections {max_total} held to {room}: the open-file limit is {soft}; raise it (ulimit -n) to allow more"
        );
    }
    max_total.min(room)
}

/// One connection's server, whatever its stream.
struct One<S> {
    builder: hyper::server::conn::http1::Builder,
    service: S,
    watcher: hyper_util::server::graceful::Watcher,
    write_timeout: Duration,
    timed_out: prometheus::IntCounter,
}

impl<S> One<S>
where
    S: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    async fn serve<T>(self, stream: T)
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let conn = self
            .builder
            .serve_connection(guarded(stream, self.write_timeout), self.service);
        if let Err(e) = self.watcher.watch(conn).await {
            if is_deadline(&e) {
                self.timed_out.inc();
            }
            tracing::debug!("connection ended: {e}");
        }
    }
}

/// The kernel's send buffer of each connection, as asked (Linux doubles
/// it for its own bookkeeping).
const SEND_BUFFER: usize = 128 << 10;

/// What one connection may buffer (hyper's `max_buf_size`).
const MAX_CONNECTION_BUFFER: usize = 64 << 10;

/// How long shutdown waits for requests in flight.
const DRAIN: Duration = Duration::from_secs(10);

/// The stream with a deadline on writes that make no progress.
fn guarded<T>(stream: T, write_timeout: Duration) -> TokioIo<super::deadline::WriteDeadline<T>>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    TokioIo::new(super::deadline::WriteDeadline::new(stream, write_timeout))
}

/// The router as a hyper service, with the peer's address where the
/// handlers look for it (`ConnectInfo`, as `axum::serve` puts it).
fn service(
    router: &axum::Router,
    peer: SocketAddr,
    requests: Arc<tokio::sync::Semaphore>,
    pace: Arc<Pacer>,
) -> impl hyper::service::Service<
    hyper::Request<hyper::body::Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone {
    let router = router.clone();
    hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let mut req = req.map(axum::body::Body::new);
        req.extensions_mut().insert(ConnectInfo(peer));
        let (router, requests, pace) = (router.clone(), requests.clone(), pace.clone());
        async move {
            let wait = pace.reserve();
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            let Ok(_permit) = requests.try_acquire_owned() else {
                return Ok(address_busy());
            };
            router.oneshot(req).await
        }
    })
}

/// The answer past the address's share of requests in flight.
fn address_busy() -> axum::response::Response {
    use axum::response::IntoResponse;
    super::ApiError {
        retry_after: Some(Duration::from_secs(1)),
        ..super::ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "too many requests in flight from this address; try again later",
        )
    }
    .into_response()
}

/// Whether a connection ended on one of its deadlines.
fn is_deadline(e: &hyper::Error) -> bool {
    if e.is_timeout() {
        return true;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::TimedOut;
        }
        source = s.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per: usize) -> ConnectionLimits {
        ConnectionLimits {
            max_total: total,
            max_per_address: per,
            ..ConnectionLimits::default()
        }
    }

    #[test]
    fn slots_are_capped_per_address_and_in_total_and_given_back() {
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let open = IntGauge::new("t", "t").unwrap();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let l = limits(3, 2);
        let a1 = Slot::take(&ledger, a, &l, &open).unwrap();
        let _a2 = Slot::take(&ledger, a, &l, &open).unwrap();
        assert_eq!(Slot::take(&ledger, a, &l, &open).err(), Some("per_address"));
        let _b1 = Slot::take(&ledger, b, &l, &open).unwrap();
        assert_eq!(Slot::take(&ledger, b, &l, &open).err(), Some("total"));
        assert_eq!(open.get(), 3);
        drop(a1);
        assert_eq!(open.get(), 2);
        assert!(Slot::take(&ledger, a, &l, &open).is_ok());
        let l = ledger.lock().unwrap();
        assert_eq!((l.total, l.by_address.len()), (2, 2));
    }
}
