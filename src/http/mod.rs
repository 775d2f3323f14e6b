//! The HTTP API (SPEC §11): the seed platform's `GET /v10/orders/export` and
//! `POST /v10/orders/mark-as-exported` on the same store the file side
//! uses, plus `GET /metrics` and `GET /healthz`.
//!
//! It runs in the daemon's process, in its own thread with its own tokio
//! runtime ([`start`]), sharing the `Arc<Engine>`: sled is safe to use from
//! both sides, and every store access of a request runs on tokio's blocking
//! pool, so neither a slow client nor a file backlog stalls the other side.
//! The file loop knows nothing of this module; this module calls the store
//! and the shared [`crate::filter`] / ack code, never the file side.
//!
//! - [`query`]: the GET's query string → an [`query::ExportQuery`].
//! - [`export`]: the GET's streamed answer.
//! - [`mark`]: the POST; [`entries`]: its body, parsed as it streams in.
//! - [`serve`]: the connections, bounded in number, time and memory.

mod entries;
mod export;
mod mark;
pub mod query;
pub mod serve;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::TokenConfig;
use crate::engine::Engine;
use crate::problem::Problem;

/// The largest request body accepted (413 beyond it).
pub const MAX_BODY: usize = 16 << 20;
/// Connections the kernel keeps waiting beyond the connection cap (capped
/// by `net.core.somaxconn`). Past it, the kernel drops new ones: their
/// clients retry or time out, and hold no descriptor of ours.
const BACKLOG: u32 = 1024;
/// How long a stop waits for requests in flight before closing them.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// The HTTP API could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot listen on {addr} for the HTTP API ([http] listen): {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("starting the HTTP API: {0}")]
    Runtime(std::io::Error),
}

/// The running server; dropping it stops it (requests in flight get
/// [`STOP_GRACE`] to finish).
pub struct Server {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts the HTTP API when `[http] listen` is set (`Ok(None)` otherwise).
/// The address is bound before this returns, so a bad or taken address is
/// an error here, at start-up.
pub fn start(engine: Arc<Engine>) -> Result<Option<Server>, HttpError> {
    let Some(addr) = engine.config.http.listen else {
        return Ok(None);
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("http")
        .enable_all()
        .build()
        .map_err(HttpError::Runtime)?;
    let listener = {
        let _in_rt = rt.enter();
        listen(addr).map_err(|source| HttpError::Bind { addr, source })?
    };
    let bound = listener.local_addr().unwrap_or(addr);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let http = &engine.config.http;
    let nofile = serve::nofile_soft_limit();
    let cap = serve::connection_cap(http.max_connections, nofile);
    let timeouts = serve::Timeouts::of(http);
    let app = router(engine.clone());
    let thread = std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            rt.block_on(async move {
                let (graceful_tx, graceful_rx) = tokio::sync::watch::channel(false);
                let serve = serve::serve(listener, app, cap, timeouts, graceful_rx);
                let grace = async move {
                    let _ = stop_rx.await;
                    let _ = graceful_tx.send(true);
                    tokio::time::sleep(STOP_GRACE).await;
                };
                tokio::select! {
                    () = serve => {}
                    () = grace => tracing::warn!("HTTP API: requests still open after the grace period were closed"),
                }
            });
            rt.shutdown_timeout(Duration::from_secs(1));
        })
        .map_err(HttpError::Runtime)?;
    let nofile = nofile.map_or_else(|| "unlimited".to_string(), |n| n.to_string());
    tracing::info!(
        listen = %bound,
        max_connections = cap,
        nofile = %nofile,
        reserve = serve::FD_RESERVE,
        "HTTP API listening (connections capped so the file side keeps a reserve of descriptors)"
    );
    Ok(Some(Server {
        stop: Some(stop_tx),
        thread: Some(thread),
    }))
}

/// The listening socket, with a backlog of [`BACKLOG`] (std's is 128).
fn listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// The routes, with request counting, the body limit, and JSON answers for
/// unknown paths (404) and wrong methods (405).
pub fn router(engine: Arc<Engine>) -> Router {
    Router::new()
        .route("/v10/orders/export", get(export::handle))
        .route(
            "/v10/orders/mark-as-exported",
            axum::routing::post(mark::handle),
        )
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn(standby))
        .layer(middleware::from_fn(count))
        .with_state(engine)
}

/// On a standby of a pair, the API answers 503 with `Retry-After` and the
/// leader's name: it is served by the leader only (its answers would
/// otherwise depend on which node a balancer picked, and a mark-as-exported
/// would be refused by the fence anyway). `/healthz`, `/readyz` and
/// `/metrics` answer on every node.
async fn standby(req: Request, next: Next) -> Response {
    let Some(role) = crate::cluster::role().filter(|r| !r.is_leader()) else {
        return next.run(req).await;
    };
    if !req.uri().path().starts_with("/v10/") {
        return next.run(req).await;
    }
    let what = match role.leader() {
        Some(leader) => format!(
            "this node ({}) is a standby: {leader} leads; ask it",
            role.node
        ),
        None => format!(
            "this node ({}) is a standby and no node leads yet",
            role.node
        ),
    };
    let mut res = problems(
        StatusCode::SERVICE_UNAVAILABLE,
        "standby",
        vec![Problem::new("leader", what)],
    );
    res.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    if let Some(leader) = role.leader()
        && let Ok(v) = header::HeaderValue::from_str(&leader)
    {
        res.headers_mut().insert("x-ordersync-leader", v);
    }
    res
}

/// This node's part: `{"role", "node", "leader"}`.
fn role_fields() -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    if let Some(role) = crate::cluster::role() {
        m.insert("role".into(), role.name().into());
        m.insert("node".into(), role.node.clone().into());
        m.insert("leader".into(), role.leader().into());
    }
    m
}

/// Ready for traffic: the store answers and this node leads (a standby of
/// a pair answers 503, for load balancers).
async fn readyz(State(engine): State<Arc<Engine>>) -> Response {
    let ok = tokio::task::spawn_blocking(move || engine.store.order_count()).await;
    let mut body = role_fields();
    let leads = crate::cluster::role().is_none_or(|r| r.is_leader());
    let problem = match ok {
        Ok(Ok(_)) if leads => None,
        Ok(Ok(_)) => Some("this node is a standby".to_string()),
        Ok(Err(e)) => Some(e.to_string()),
        Err(e) => Some(e.to_string()),
    };
    let status = match &problem {
        None => StatusCode::OK,
        Some(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    body.insert(
        "status".into(),
        if problem.is_none() {
            "ok"
        } else {
            "unavailable"
        }
        .into(),
    );
    if let Some(p) = problem {
        body.insert("problem".into(), p.into());
    }
    (status, axum::Json(serde_json::Value::Object(body))).into_response()
}

/// Counts every answer by route and status for `/metrics`.
async fn count(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let res = next.run(req).await;
    crate::metrics::global().request(&route, res.status().as_u16());
    res
}

async fn metrics(State(engine): State<Arc<Engine>>, headers: HeaderMap) -> Response {
    // OpenMetrics when asked for (Prometheus does); otherwise the classic
    // text format, which `curl … | promtool check metrics` reads.
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let openmetrics = crate::metrics::wants_openmetrics(accept);
    let rendered = tokio::task::spawn_blocking(move || {
        crate::metrics::global().render(&engine.store, &engine.config, openmetrics)
    })
    .await;
    let content_type = if openmetrics {
        crate::metrics::OPENMETRICS
    } else {
        crate::metrics::CLASSIC
    };
    match rendered {
        Ok(Ok(text)) => ([(header::CONTENT_TYPE, content_type)], text).into_response(),
        Ok(Err(e)) => server_error(&e.to_string()),
        Err(e) => server_error(&e.to_string()),
    }
}

/// Live: the store answers (on a leader and a standby alike), with this
/// node's role.
async fn healthz(State(engine): State<Arc<Engine>>) -> Response {
    // A commit waiting on synchronous standbys that do not answer: the
    // store answers reads, but nothing it is given goes through.
    if let Some(why) = engine.store.postgres().and_then(|pg| pg.sync_wait()) {
        return unavailable(&why);
    }
    let ok = tokio::task::spawn_blocking(move || engine.store.order_count()).await;
    match ok {
        Ok(Ok(_)) => {
            let mut body = role_fields();
            body.insert("status".into(), "ok".into());
            #[cfg(feature = "sftp")]
            if !crate::remote::status::snapshot().is_empty() {
                body.insert("remotes".into(), crate::remote::status::json());
            }
            (StatusCode::OK, axum::Json(serde_json::Value::Object(body))).into_response()
        }
        Ok(Err(e)) => unavailable(&e.to_string()),
        Err(e) => unavailable(&e.to_string()),
    }
}

async fn not_found(req: Request) -> Response {
    let at = req.uri().path().to_string();
    problems(
        StatusCode::NOT_FOUND,
        "not found",
        vec![Problem::new(at, "no such endpoint")],
    )
}

async fn method_not_allowed(req: Request) -> Response {
    let what = format!("method {} is not allowed here", req.method());
    problems(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed",
        vec![Problem::new(req.uri().path().to_string(), what)],
    )
}

/// The JSON error answer: `{"error": "...", "problems": [{"at", "what"}]}`.
pub(crate) fn problems(status: StatusCode, error: &str, list: Vec<Problem>) -> Response {
    let list: Vec<_> = list
        .iter()
        .map(|p| json!({"at": p.at, "what": p.what}))
        .collect();
    (
        status,
        axum::Json(json!({"error": error, "problems": list})),
    )
        .into_response()
}

pub(crate) fn server_error(what: &str) -> Response {
    tracing::error!(error = %what, "HTTP API: store failure");
    problems(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error",
        vec![Problem::new("store", what)],
    )
}

fn unavailable(what: &str) -> Response {
    problems(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        vec![Problem::new("store", what)],
    )
}

/// The token a request authenticates with.
pub(crate) struct Caller<'a> {
    pub token: &'a TokenConfig,
}

impl Caller<'_> {
    /// Whether the token may use `system`.
    pub fn may_use(&self, system: &str) -> bool {
        self.token
            .systems
            .as_ref()
            .is_none_or(|s| s.iter().any(|id| id == system))
    }
}

/// Checks `Authorization: Bearer TOKEN` against the configured tokens: the
/// SHA-256 of the token is compared with every configured hash in constant
/// time (no early exit), so timing tells nothing about the hashes. The
/// token itself is never logged. `Err` says what is wrong, for
/// [`unauthorized`].
pub(crate) fn authenticate<'a>(
    engine: &'a Engine,
    headers: &HeaderMap,
) -> Result<Caller<'a>, &'static str> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err("missing: send Authorization: Bearer TOKEN");
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return Err("expected Bearer TOKEN");
    };
    let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    let mut found = None;
    for t in &engine.config.http.tokens {
        if bool::from(t.sha256.ct_eq(&hash)) {
            found = Some(t);
        }
    }
    found.map(|token| Caller { token }).ok_or("unknown token")
}

/// The 401 answer.
pub(crate) fn unauthorized(what: &str) -> Response {
    let mut res = problems(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        vec![Problem::new("header Authorization", what)],
    );
    res.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    res
}

/// The 403 answer for a system outside the token's scope.
pub(crate) fn forbidden(caller: &Caller, at: &str, system: &str) -> Response {
    problems(
        StatusCode::FORBIDDEN,
        "forbidden",
        vec![Problem::new(
            at,
            format!(
                "token {:?} may not use system {system:?}",
                caller.token.name
            ),
        )],
    )
}

/// A body that is JSON bytes already.
pub(crate) fn json_body(status: StatusCode, body: impl Into<Body>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.into(),
    )
        .into_response()
}

/// The mark-as-exported body parser ([`entries::parse`]) on a whole body:
/// the rows and problems of its entries, or the body's one problem. For
/// the `mark_body` fuzz target (fuzz/).
#[doc(hidden)]
pub fn mark_rows(
    body: &[u8],
) -> Result<(Vec<crate::csvin::AckRow>, Vec<crate::problem::Problem>), Vec<crate::problem::Problem>>
{
    entries::parse(body)
        .map(|e| (e.rows, e.problems))
        .map_err(|e| vec![e.problem()])
}
