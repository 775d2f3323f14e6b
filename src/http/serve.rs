//! The HTTP server's connections, bounded so that the HTTP side can never
//! take descriptors, memory or time from the file side.
//!
//! - **Connections**: a permit of a semaphore is taken *before* each
//!   `accept`, so the server holds at most the cap ([`connection_cap`]:
//!   `[http] max_connections`, lowered to keep [`FD_RESERVE`] descriptors
//!   for the file side) and one more.
//! - **Shedding**: when the cap is reached and a new connection comes,
//!   the server closes the connection that has waited longest for a
//!   request head (idle since its last answer, or a head begun and not
//!   finished; never one with a request in flight) to make room for it.
//!   A flood of slow or idle connections thus cannot keep a prompt client
//!   (`/healthz`) waiting in the backlog for a header timeout: each new
//!   connection pushes out the oldest idle one. With every connection busy
//!   with a request, the new one waits for the first to end.
//! - **Memory**: a connection buffers about [`MAX_BUF`] bytes of a
//!   request head; bodies are read by their handler as they come.
//! - **Time**: each connection has a watchdog ([`Activity`]): with no
//!   request in flight, a connection that has sent part of a request's head
//!   for `header_timeout`, or nothing at all for `idle_timeout`, is closed.
//!   An answer is never cut short while it is being written. A request's
//!   body is timed by the handler that reads it
//!   (`body_timeout`, see `mark.rs`); the others never read one.
//! - **Stop**: when told, the listener is closed (new connections are
//!   refused), idle connections are closed at once, and requests in flight
//!   finish (the caller bounds how long).
//!
//! HTTP/1.1 only, through hyper's own connection driver; the routes are the
//! axum [`Router`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, TryAcquireError, watch};
use tower::ServiceExt;

use crate::config::HttpConfig;

/// Descriptors kept for the file side (inbox scans, files being read and
/// written, the store, the control socket, the watcher): the HTTP server
/// never holds more than the soft limit minus this many connections.
pub const FD_RESERVE: u64 = 256;
/// How long a connection closed by the server still reads what its
/// client sends, and how much ([`linger`]); a client still sending after
/// that has its connection reset.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = super::MAX_BODY;
/// How long the accept loop waits after a failed `accept` (out of
/// descriptors, say) before trying again, instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// A connection's read (and write) buffer: a request head that does not
/// fit is refused (431). hyper checks it when a head is still incomplete,
/// and a read may fill the buffer's capacity first, so heads of up to
/// twice this can pass and a connection holds at most ~64 KiB. hyper's
/// default, ~400 KiB, let clients that send most of a huge head and wait
/// pin 300 MB across the connection cap; this bounds them to ~48 MiB.
const MAX_BUF: usize = 32 << 10;
/// How often a connection with a request in flight is looked at again.
const BUSY_RECHECK: Duration = Duration::from_secs(1);

/// The timeouts of a connection, from `[http]`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timeouts {
    header: Duration,
    idle: Duration,
}

impl Timeouts {
    pub(super) fn of(c: &HttpConfig) -> Timeouts {
        Timeouts {
            header: c.header_timeout,
            idle: c.idle_timeout,
        }
    }
}

/// The most connections the server holds when `max_connections` is not
/// set, whatever the descriptor limit: what a flood of idle connections
/// can cost in memory stays bounded (a few tens of MiB).
pub const DEFAULT_CAP_MAX: u64 = 4096;

/// How many connections the server may hold at once: `max_connections`,
/// but never more than the descriptor soft limit (`nofile`) minus
/// [`FD_RESERVE`], and at least 1. Not set: that room itself, at most
/// [`DEFAULT_CAP_MAX`] (1,024 where the limit is unknown).
pub fn connection_cap(max_connections: Option<usize>, nofile: Option<u64>) -> usize {
    let room = nofile.map_or(u64::MAX, |n| n.saturating_sub(FD_RESERVE).max(1));
    let wanted = match max_connections {
        Some(n) => n as u64,
        None if nofile.is_none() => 1024,
        None => DEFAULT_CAP_MAX,
    };
    wanted.min(room) as usize
}

/// The process's current descriptor soft limit (`None`: unlimited).
pub fn nofile_soft_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// Accepts connections until `stop` turns true, then waits for the open
/// ones to finish (idle ones are closed at once).
pub(super) async fn serve(
    listener: TcpListener,
    app: Router,
    cap: usize,
    timeouts: Timeouts,
    mut stop: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(cap));
    let open = Arc::new(Open::default());
    let mut failing_since: Option<Instant> = None;
    let mut shedding = false;
    loop {
        // The permit comes first: at the cap, a connection is accepted
        // only to take the place of one shed.
        let (permit, accepted) = match permits.clone().try_acquire_owned() {
            Ok(p) => {
                shedding = false;
                let accepted = tokio::select! {
                    r = listener.accept() => r,
                    _ = stop.wait_for(|s| *s) => break,
                };
                (p, accepted)
            }
            Err(TryAcquireError::Closed) => break,
            Err(TryAcquireError::NoPermits) => {
                let r = tokio::select! {
                    p = permits.clone().acquire_owned() => match p {
                        // A place came free: accept as usual.
                        Ok(_) => continue,
                        Err(_) => break,
                    },
                    r = listener.accept() => r,
                    _ = stop.wait_for(|s| *s) => break,
                };
                // Full, and someone waits: make room.
                if open.shed_one() && !shedding {
                    shedding = true;
                    tracing::warn!(
                        max_connections = cap,
                        "HTTP API: connections at the cap; closing the ones that waited longest for a request head to make room"
                    );
                }
                let p = tokio::select! {
                    p = permits.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                    _ = stop.wait_for(|s| *s) => break,
                };
                (p, r)
            }
        };
        match accepted {
            Ok((stream, _peer)) => {
                failing_since = None;
                let _ = stream.set_nodelay(true);
                tokio::spawn(connection(
                    stream,
                    app.clone(),
                    timeouts,
                    stop.clone(),
                    permit,
                    open.clone(),
                ));
            }
            Err(e) => {
                // Out of descriptors, or a connection reset before it was
                // accepted: log once per run of failures, wait, retry. The
                // waiting connections stay in the backlog.
                if failing_since.is_none() {
                    tracing::warn!(error = %e, "HTTP API: cannot accept a connection; retrying");
                    failing_since = Some(Instant::now());
                }
                drop(permit);
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
    // Closing the listener refuses new connections from now on.
    drop(listener);
    // Every permit back: every connection is closed.
    let _ = permits.acquire_many(cap as u32).await;
}

/// One connection, until it ends, its watchdog fires or a stop closes it
/// gracefully. The permit is held until then.
async fn connection(
    stream: TcpStream,
    app: Router,
    timeouts: Timeouts,
    mut stop: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
    open: Arc<Open>,
) {
    let activity = Arc::new(Activity::new());
    let _listed = open.add(activity.clone());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let app = app.clone();
            let guard = activity.begin();
            // Boxed: a connection polled without hyper's shutdown (for the
            // lingering close) needs a future it can move.
            Box::pin(async move {
                let res = app.oneshot(req.map(Body::new)).await?;
                Ok::<_, Infallible>(res.map(|inner| Guarded {
                    inner,
                    _guard: guard,
                }))
            })
        })
    };
    let mut conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        // Timed by the watchdog below, not by hyper (which would need its
        // own timer).
        .header_read_timeout(None)
        .max_buf_size(MAX_BUF)
        .serve_connection(io, service);
    let mut stopping = false;
    let ended = loop {
        tokio::select! {
            r = std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)) => break r,
            _ = stop.wait_for(|s| *s), if !stopping => {
                stopping = true;
                Pin::new(&mut conn).graceful_shutdown();
            }
            () = activity.expired(timeouts) => {
                tracing::debug!("HTTP connection closed: idle or too slow a request head");
                return;
            }
            () = activity.shed.notified() => {
                tracing::debug!("HTTP connection closed to make room: it waited longest for a request head");
                return;
            }
        }
    };
    match ended {
        Ok(()) => {
            let stream = conn.into_parts().io.into_inner().inner;
            linger(stream, stop).await;
        }
        Err(e) => tracing::debug!(error = %e, "HTTP connection ended"),
    }
}

/// A lingering close: our side of the connection is shut (the client
/// reads the answer to its end), then whatever the client still sends is
/// read and dropped until it closes too, for at most [`LINGER`] and
/// [`LINGER_BYTES`] or until the daemon stops. Without it, a connection
/// closed with unread bytes (an answer given before the request's body was
/// read whole: a body found not to be JSON in its first bytes, or over
/// the size limit) is reset, and a reset can destroy the answer before the
/// client has read it: the client would see "connection reset", not the
/// 400 or 413 that says what was wrong.
async fn linger(mut stream: TcpStream, mut stop: watch::Receiver<bool>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if stream.shutdown().await.is_err() {
        return;
    }
    let mut buf = vec![0u8; 16 << 10];
    let drain = async {
        let mut left = LINGER_BYTES;
        while left > 0 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    tokio::select! {
        () = drain => {}
        () = tokio::time::sleep(LINGER) => {}
        _ = stop.wait_for(|s| *s) => {}
    }
}

/// The open connections, for shedding.
#[derive(Default)]
struct Open {
    next: AtomicU64,
    all: Mutex<HashMap<u64, Arc<Activity>>>,
}

impl Open {
    fn list(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Activity>>> {
        // Inserts and removes only: nothing half done to see after a panic.
        self.all.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lists a connection until the returned guard is dropped.
    fn add(self: &Arc<Open>, activity: Arc<Activity>) -> Listed {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.list().insert(id, activity);
        Listed(self.clone(), id)
    }

    /// Tells the connection that has waited longest for a request head
    /// (no request in flight, no answer left to write) to close; false
    /// when every connection is busy.
    fn shed_one(&self) -> bool {
        let mut list = self.list();
        let victim = list
            .iter()
            .filter_map(|(id, a)| a.waiting_since().map(|since| (since, *id)))
            .min();
        match victim.and_then(|(_, id)| list.remove(&id)) {
            Some(a) => {
                a.shed.notify_one();
                true
            }
            None => false,
        }
    }
}

/// A connection listed in [`Open`]; unlisted when dropped.
struct Listed(Arc<Open>, u64);

impl Drop for Listed {
    fn drop(&mut self) {
        self.0.list().remove(&self.1);
    }
}

/// What a connection is doing, for its watchdog.
struct Activity {
    state: Mutex<Phase>,
    /// Told when the server sheds this connection to make room.
    shed: Notify,
}

struct Phase {
    /// Requests whose answer is not yet sent whole.
    in_flight: usize,
    /// When the current wait began: the connection opened, the last
    /// answer ended, or the first byte of the next request came.
    since: Instant,
    /// Whether a byte of the next request came since `since`.
    reading_head: bool,
    /// Whether the last write found the socket full: the end of an answer
    /// may still be in hyper's buffer, waiting for the client to read.
    write_blocked: bool,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            state: Mutex::new(Phase {
                in_flight: 0,
                since: Instant::now(),
                reading_head: false,
                write_blocked: false,
            }),
            shed: Notify::new(),
        }
    }

    /// Since when the connection has waited for a request head (idle, or
    /// a head begun); `None` while a request is in flight or an answer
    /// is being written.
    fn waiting_since(&self) -> Option<Instant> {
        let p = self.phase();
        (p.in_flight == 0 && !p.write_blocked).then_some(p.since)
    }

    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        // A panic while holding this lock cannot leave the phase half
        // changed (every change is one field or two plain stores).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A request's head was read: its handling begins.
    fn begin(self: &Arc<Activity>) -> InFlight {
        self.phase().in_flight += 1;
        InFlight(self.clone())
    }

    /// Bytes came in.
    fn read(&self) {
        let mut p = self.phase();
        if p.in_flight == 0 && !p.reading_head {
            p.reading_head = true;
            p.since = Instant::now();
        }
    }

    /// A write found the socket full (`true`) or went through (`false`).
    fn wrote(&self, blocked: bool) {
        let mut p = self.phase();
        if p.write_blocked != blocked {
            p.write_blocked = blocked;
            if !blocked {
                p.since = Instant::now();
            }
        }
    }

    /// Resolves when the connection has waited too long: a head begun
    /// more than `header` ago, or nothing at all for `idle`.
    async fn expired(&self, t: Timeouts) {
        loop {
            let deadline = {
                let p = self.phase();
                // An answer still being written is never cut short.
                if p.in_flight > 0 || p.write_blocked {
                    Instant::now() + BUSY_RECHECK
                } else {
                    let limit = if p.reading_head { t.header } else { t.idle };
                    if p.since.elapsed() >= limit {
                        return;
                    }
                    p.since + limit
                }
            };
            tokio::time::sleep_until(deadline.into()).await;
        }
    }
}

/// A request in flight; dropped when its answer has been sent whole (or
/// abandoned).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut p = self.0.phase();
        p.in_flight = p.in_flight.saturating_sub(1);
        p.since = Instant::now();
        p.reading_head = false;
    }
}

/// An answer's body, holding its request's [`InFlight`] until it is done.
struct Guarded {
    inner: Body,
    _guard: InFlight,
}

impl hyper::body::Body for Guarded {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The connection's socket, telling its [`Activity`] when bytes come in.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.activity.wrote(r.is_pending());
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.activity.wrote(r.is_pending());
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_keeps_a_reserve_of_descriptors() {
        assert_eq!(connection_cap(Some(1024), Some(1024)), 768);
        assert_eq!(connection_cap(Some(1024), Some(65536)), 1024);
        assert_eq!(connection_cap(Some(10), Some(1024)), 10);
        assert_eq!(connection_cap(Some(1024), None), 1024);
        // A limit below the reserve still serves one connection.
        assert_eq!(connection_cap(Some(1024), Some(100)), 1);
    }

    /// Not set, the cap follows the descriptor limit (issue 22 §4: a fixed
    /// 1,024 left a daemon with 65,536 descriptors shedding at 1,024), up
    /// to a bound on what idle connections can cost.
    #[test]
    fn the_default_cap_follows_the_descriptor_limit() {
        assert_eq!(connection_cap(None, Some(1024)), 768);
        assert_eq!(connection_cap(None, Some(2048)), 1792);
        assert_eq!(connection_cap(None, Some(65536)), 4096);
        assert_eq!(connection_cap(None, None), 1024);
    }
}
