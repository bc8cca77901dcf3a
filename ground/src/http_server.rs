//! The HTTP API's server: the axum router (`http`) on hyper's HTTP/1 connections, with what one
//! client can hold bounded (docs/ICD.md section 12).
//!
//! - A request head must arrive within `header_read_timeout` of the connection opening or of the
//!   previous response ending (hyper's header read timeout; it is also the keep-alive idle timeout).
//! - A request must be answered within `request_timeout` of its head, its body read included: a
//!   body that does not arrive in time gets `408` and the connection is closed.
//! - A response the client takes no byte of for `write_stall_timeout` ends the connection.
//! - At most `max_connections` connections are open, `max_per_peer` from one address. A new
//!   connection over a limit closes the oldest connection under that limit that is waiting for a
//!   request head (one that never finished its headers, or an idle keep-alive one): whoever holds
//!   connections open without asking anything loses them to whoever asks. When every connection
//!   has a request in progress, a new one from an address at its own limit is closed, and one over
//!   the total limit waits for a slot (requests are bounded by the timeouts above).
//!
//! `axum::serve` has none of these (no header timeout, no limit); it is replaced by this loop.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::http::{Request, Response, StatusCode, header};
use axum::response::IntoResponse;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Sleep;

/// From a connection's opening, or its previous response's end, to a complete request head.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// From a request's head to its response's head: the body read and the handler.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest a response may wait for the client to take a byte.
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Open connections at most.
pub const MAX_CONNECTIONS: usize = 1024;
/// Open connections from one IP address at most.
pub const MAX_CONNECTIONS_PER_PEER: usize = 256;
/// Open files left for the rest of the process (archive, stations, logs) when the connection
/// limit is lowered to fit the process's open-file limit.
pub const RESERVED_FILES: u64 = 256;

/// What one client can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub request_timeout: Duration,
    pub write_stall_timeout: Duration,
    pub max_connections: usize,
    pub max_per_peer: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: HEADER_READ_TIMEOUT,
            request_timeout: REQUEST_TIMEOUT,
            write_stall_timeout: WRITE_STALL_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
            max_per_peer: MAX_CONNECTIONS_PER_PEER,
        }
    }
}

impl Limits {
    /// The default limits, the connection limits lowered to fit this process's soft open-file
    /// limit (`RLIMIT_NOFILE`, 1,024 under systemd by default) less `RESERVED_FILES`: a server
    /// that runs out of file descriptors cannot accept, and then cannot shed either.
    pub fn for_this_process() -> Self {
        let limits = Self::default();
        match soft_open_file_limit() {
            Some(files) => limits.fitted_to_open_files(files),
            None => limits,
        }
    }

    /// These limits with at most `files - RESERVED_FILES` connections (16 at the least).
    pub fn fitted_to_open_files(self, files: u64) -> Self {
        let room = usize::try_from(files.saturating_sub(RESERVED_FILES)).unwrap_or(usize::MAX).max(16);
        let max_connections = self.max_connections.min(room);
        Self { max_connections, max_per_peer: self.max_per_peer.min(max_connections), ..self }
    }
}

/// The soft limit on open files, from `/proc/self/limits` (Linux); `None` when unlimited or unknown.
fn soft_open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find_map(|line| line.strip_prefix("Max open files"))?;
    line.split_whitespace().next()?.parse().ok()
}

/// Serves `router` on `listener` under `limits`, until the future is dropped.
pub async fn serve(listener: TcpListener, router: Router, limits: Limits) -> Infallible {
    let registry = Arc::new(Registry::new(limits));
    let mut accept_failing = false;
    let mut full_reported = false;
    'accept: loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => {
                accept_failing = false;
                accepted
            }
            Err(error) => {
                if !is_per_connection(&error) {
                    // out of file descriptors or memory: wait for connections to close
                    if !accept_failing {
                        tracing::warn!("the HTTP server cannot accept a connection: {error}");
                    }
                    accept_failing = true;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                continue;
            }
        };
        let (id, connection) = loop {
            match registry.admit(peer.ip()) {
                Admission::Admitted(id, connection) => break (id, connection),
                Admission::PeerFull => {
                    tracing::debug!(%peer, "HTTP connection refused: every connection from its address is busy");
                    continue 'accept;
                }
                Admission::Full => {
                    if !full_reported {
                        tracing::warn!(
                            "all {} HTTP connections have a request in progress: new connections wait",
                            limits.max_connections
                        );
                        full_reported = true;
                    }
                    registry.freed.notified().await;
                }
            }
        };
        full_reported = false;
        tokio::spawn(serve_connection(stream, peer, id, connection, registry.clone(), router.clone()));
    }
}

/// Accept errors that concern only the connection being accepted.
fn is_per_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionRefused
    )
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    id: u64,
    connection: Arc<Connection>,
    registry: Arc<Registry>,
    router: Router,
) {
    let limits = registry.limits;
    let io = TokioIo::new(StallBounded::new(stream, limits.write_stall_timeout));
    let service = ApiService {
        router,
        connection: connection.clone(),
        registry: registry.clone(),
        request_timeout: limits.request_timeout,
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout).keep_alive(true);
    tokio::select! {
        result = builder.serve_connection(io, service) => {
            if let Err(error) = result {
                tracing::debug!(%peer, "HTTP connection ended: {error}");
            }
        }
        () = connection.shed.notified() => {
            tracing::debug!(%peer, "HTTP connection waiting for a request closed to make room for a new one");
        }
    }
    registry.release(id);
}

/// One open connection, as the registry sees it.
#[derive(Debug, Default)]
struct Connection {
    /// Requests between their head and the end of their response (0: waiting for a head).
    requests: AtomicUsize,
    /// Told when the registry closes the connection to make room.
    shed: Notify,
}

#[derive(Debug)]
struct Entry {
    peer: IpAddr,
    connection: Arc<Connection>,
}

#[derive(Debug, Default)]
struct Table {
    next_id: u64,
    /// By id, that is by age: the oldest first.
    open: BTreeMap<u64, Entry>,
    per_peer: HashMap<IpAddr, usize>,
}

impl Table {
    fn remove(&mut self, id: u64) -> Option<Entry> {
        let entry = self.open.remove(&id)?;
        if let Some(count) = self.per_peer.get_mut(&entry.peer) {
            *count -= 1;
            if *count == 0 {
                self.per_peer.remove(&entry.peer);
            }
        }
        Some(entry)
    }

    /// Closes the oldest connection (from `peer`, or from anyone) waiting for a request head;
    /// false when there is none.
    fn shed_oldest_waiting(&mut self, peer: Option<IpAddr>) -> bool {
        let oldest = self.open.iter().find(|(_, entry)| {
            peer.is_none_or(|peer| entry.peer == peer) && entry.connection.requests.load(Ordering::SeqCst) == 0
        });
        let Some(id) = oldest.map(|(id, _)| *id) else { return false };
        if let Some(entry) = self.remove(id) {
            entry.connection.shed.notify_one();
        }
        true
    }
}

/// The open connections, and the limits on them.
#[derive(Debug)]
struct Registry {
    limits: Limits,
    table: Mutex<Table>,
    /// Told when a connection closes or a request ends (the accept loop may be waiting for a slot).
    freed: Notify,
}

#[derive(Debug)]
enum Admission {
    Admitted(u64, Arc<Connection>),
    /// Every connection from this address has a request in progress.
    PeerFull,
    /// Every connection has a request in progress.
    Full,
}

impl Registry {
    fn new(limits: Limits) -> Self {
        Self { limits, table: Mutex::new(Table::default()), freed: Notify::new() }
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for a new connection from `peer`, made by closing an older one if need be.
    fn admit(&self, peer: IpAddr) -> Admission {
        let mut table = self.table();
        let from_peer = table.per_peer.get(&peer).copied().unwrap_or(0);
        if from_peer >= self.limits.max_per_peer && !table.shed_oldest_waiting(Some(peer)) {
            return Admission::PeerFull;
        }
        if table.open.len() >= self.limits.max_connections && !table.shed_oldest_waiting(None) {
            return Admission::Full;
        }
        let id = table.next_id;
        table.next_id += 1;
        let connection = Arc::new(Connection::default());
        table.open.insert(id, Entry { peer, connection: connection.clone() });
        *table.per_peer.entry(peer).or_insert(0) += 1;
        Admission::Admitted(id, connection)
    }

    /// Connection `id` has closed (already gone from the table when it was shed).
    fn release(&self, id: u64) {
        self.table().remove(id);
        self.freed.notify_one();
    }
}

/// The router, for one connection: each request under the request timeout, counted from its
/// head to the end of its response.
#[derive(Debug, Clone)]
struct ApiService {
    router: Router,
    connection: Arc<Connection>,
    registry: Arc<Registry>,
    request_timeout: Duration,
}

impl hyper::service::Service<Request<Incoming>> for ApiService {
    type Response = Response<CountedBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let guard = RequestGuard::new(self.connection.clone(), self.registry.clone());
        let mut router = self.router.clone();
        let timeout = self.request_timeout;
        Box::pin(async move {
            let answer = tower_service::Service::call(&mut router, request.map(Body::new));
            let response = match tokio::time::timeout(timeout, answer).await {
                Ok(Ok(response)) => response,
                Ok(Err(never)) => match never {},
                Err(_) => timed_out(timeout),
            };
            Ok(response.map(|body| CountedBody { body, _guard: guard }))
        })
    }
}

fn timed_out(timeout: Duration) -> Response<Body> {
    let message = format!("the request was not complete within {} s", timeout.as_secs());
    (StatusCode::REQUEST_TIMEOUT, [(header::CONNECTION, "close")], Json(serde_json::json!({ "error": message })))
        .into_response()
}

/// Counts a request on its connection until dropped (with its response's body, once sent).
#[derive(Debug)]
struct RequestGuard {
    connection: Arc<Connection>,
    registry: Arc<Registry>,
}

impl RequestGuard {
    fn new(connection: Arc<Connection>, registry: Arc<Registry>) -> Self {
        connection.requests.fetch_add(1, Ordering::SeqCst);
        Self { connection, registry }
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.connection.requests.fetch_sub(1, Ordering::SeqCst);
        self.registry.freed.notify_one();
    }
}

/// A response body that keeps its request counted until hyper has sent it and drops it.
#[derive(Debug)]
struct CountedBody {
    body: Body,
    _guard: RequestGuard,
}

impl HttpBody for CountedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A TCP stream whose writes fail once the peer has taken no byte for `limit`.
#[derive(Debug)]
struct StallBounded {
    stream: TcpStream,
    limit: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl StallBounded {
    fn new(stream: TcpStream, limit: Duration) -> Self {
        Self { stream, limit, stalled: None }
    }

    fn watch<T>(&mut self, cx: &mut Context<'_>, result: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if result.is_ready() {
            self.stalled = None;
            return result;
        }
        let limit = self.limit;
        let stalled = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if stalled.as_mut().poll(cx).is_ready() {
            self.stalled = None;
            let message = format!("the client took no byte of the response for {} s", limit.as_secs_f32());
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, message)));
        }
        Poll::Pending
    }
}

impl AsyncRead for StallBounded {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for StallBounded {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.watch(cx, result)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.watch(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_flush(cx);
        this.watch(cx, result)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_shutdown(cx);
        this.watch(cx, result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::{get, post};
    use std::net::Ipv4Addr;
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    fn admitted(registry: &Registry, peer: IpAddr) -> (u64, Arc<Connection>) {
        match registry.admit(peer) {
            Admission::Admitted(id, connection) => (id, connection),
            other => panic!("not admitted: {other:?}"),
        }
    }

    fn shed(connection: &Connection) -> bool {
        // a stored permit: `notify_one` was called
        futures_now(connection.shed.notified())
    }

    /// Whether a future is ready at its first poll.
    fn futures_now<F: Future>(future: F) -> bool {
        let mut future = std::pin::pin!(future);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        future.as_mut().poll(&mut cx).is_ready()
    }

    #[test]
    fn an_address_at_its_limit_loses_its_oldest_waiting_connection_and_busy_ones_are_kept() {
        let limits = Limits { max_connections: 8, max_per_peer: 3, ..Limits::default() };
        let registry = Registry::new(limits);
        let (_, first) = admitted(&registry, ip(1));
        let (_, second) = admitted(&registry, ip(1));
        let (_, third) = admitted(&registry, ip(1));
        let (_, other) = admitted(&registry, ip(2));
        first.requests.fetch_add(1, Ordering::SeqCst);
        // the fourth from .1 closes the oldest of .1's waiting for a head: the second
        let (_, fourth) = admitted(&registry, ip(1));
        assert!(!shed(&first) && shed(&second) && !shed(&third) && !shed(&other));
        // all of .1's busy: refused; another address is still admitted
        third.requests.fetch_add(1, Ordering::SeqCst);
        fourth.requests.fetch_add(1, Ordering::SeqCst);
        assert!(matches!(registry.admit(ip(1)), Admission::PeerFull));
        admitted(&registry, ip(3));
        assert!(!shed(&other));
    }

    #[test]
    fn over_the_total_limit_the_oldest_waiting_connection_goes_and_when_all_are_busy_a_new_one_waits() {
        let limits = Limits { max_connections: 3, max_per_peer: 3, ..Limits::default() };
        let registry = Registry::new(limits);
        let (a, first) = admitted(&registry, ip(1));
        let (_, second) = admitted(&registry, ip(2));
        let (_, third) = admitted(&registry, ip(3));
        second.requests.fetch_add(1, Ordering::SeqCst);
        let (_, fourth) = admitted(&registry, ip(4));
        assert!(shed(&first) && !shed(&second) && !shed(&third));
        registry.release(a); // the shed connection's task ending changes nothing
        third.requests.fetch_add(1, Ordering::SeqCst);
        fourth.requests.fetch_add(1, Ordering::SeqCst);
        assert!(matches!(registry.admit(ip(5)), Admission::Full));
        // a request ends: its connection waits for a head again and can make room
        second.requests.fetch_sub(1, Ordering::SeqCst);
        admitted(&registry, ip(5));
        assert!(shed(&second));
    }

    #[test]
    fn the_connection_limit_fits_the_open_file_limit() {
        let limits = Limits::default().fitted_to_open_files(1024);
        assert_eq!((limits.max_connections, limits.max_per_peer), (768, 256));
        let limits = Limits::default().fitted_to_open_files(20_000);
        assert_eq!((limits.max_connections, limits.max_per_peer), (MAX_CONNECTIONS, MAX_CONNECTIONS_PER_PEER));
        assert_eq!(Limits::default().fitted_to_open_files(100).max_connections, 16);
    }

    const SHORT: Duration = Duration::from_millis(300);

    /// A server with short timeouts: `/` answers `ok`, `/echo` the length of its body, `/big` 32 MiB.
    async fn short_server() -> SocketAddr {
        let router = Router::new()
            .route("/", get(|| async { "ok" }))
            .route("/echo", post(|body: Bytes| async move { body.len().to_string() }))
            .route("/big", get(|| async { vec![0u8; 32 << 20] }));
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.expect("bind");
        let address = listener.local_addr().expect("address");
        let limits = Limits {
            header_read_timeout: SHORT,
            request_timeout: SHORT,
            write_stall_timeout: SHORT,
            ..Limits::default()
        };
        tokio::spawn(serve(listener, router, limits));
        address
    }

    /// Everything until the server closes the connection, which it must within 5 s.
    async fn until_closed(socket: &mut TcpStream) -> Vec<u8> {
        let mut bytes = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut bytes)).await;
        assert!(read.is_ok(), "the server kept the connection open; it sent {} bytes", bytes.len());
        bytes
    }

    #[tokio::test]
    async fn a_connection_that_never_finishes_its_head_or_sits_idle_is_closed() {
        let address = short_server().await;
        let mut silent = TcpStream::connect(address).await.expect("connect");
        let mut partial = TcpStream::connect(address).await.expect("connect");
        partial.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Never: ").await.expect("write");
        let mut idle = TcpStream::connect(address).await.expect("connect");
        idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
        let started = Instant::now();
        assert!(until_closed(&mut silent).await.is_empty());
        assert!(until_closed(&mut partial).await.is_empty());
        let answer = String::from_utf8_lossy(&until_closed(&mut idle).await).into_owned();
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok"), "{answer}");
        assert!(started.elapsed() >= SHORT);
    }

    #[tokio::test]
    async fn a_body_that_does_not_arrive_in_time_gets_408() {
        let address = short_server().await;
        let mut socket = TcpStream::connect(address).await.expect("connect");
        socket
            .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
            .await
            .expect("write");
        let answer = String::from_utf8_lossy(&until_closed(&mut socket).await).into_owned();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        // a whole body in time is answered
        let mut socket = TcpStream::connect(address).await.expect("connect");
        socket
            .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc")
            .await
            .expect("write");
        let answer = String::from_utf8_lossy(&until_closed(&mut socket).await).into_owned();
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with('3'), "{answer}");
    }

    #[tokio::test]
    async fn a_client_that_does_not_read_its_response_is_disconnected() {
        let address = short_server().await;
        let mut socket = TcpStream::connect(address).await.expect("connect");
        socket.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
        tokio::time::sleep(SHORT * 4).await;
        let mut bytes = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut bytes)).await;
        // what the socket buffers held came through, then the end (or a reset)
        assert!(read.is_ok(), "the server kept the stalled connection");
        assert!(bytes.len() < 32 << 20, "the whole response came through: {} bytes", bytes.len());
    }
}
