//! `POST /v10/orders/mark-as-exported`: `{"orders": [{"order_id",
//! "system_id", "regulate_inventory", "note"}]}`, each entry exactly an ack
//! CSV row (SPEC §6), applied by the same store code
//! ([`crate::store::Store::mark_exported`]), the whole call in one
//! transaction: all or nothing. Repeating a call is harmless (an order is
//! regulated at most once).
//!
//! The token is checked from the headers before any byte of the body is
//! read. The body is then parsed as it arrives ([`super::entries`]), within
//! `[http] body_timeout` and [`super::MAX_BODY`]; an answer given before
//! the body was read whole closes the connection rather than parse the
//! rest (what the client still sends is read and dropped for a moment, so
//! that it reads the answer: `serve::linger`).

use std::io::Read;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::json;
use tokio::sync::mpsc;

use super::entries::{self, BodyError, Entries};
use super::{authenticate, forbidden, json_body, problems, server_error, unauthorized};
use crate::engine::Engine;
use crate::problem::Problem;
use crate::store::{ApplyError, Context};

/// Chunks of the body in flight between the connection and the parser.
const CHUNKS_IN_FLIGHT: usize = 4;

pub(super) async fn handle(
    State(engine): State<Arc<Engine>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let caller = match authenticate(&engine, &headers) {
        Ok(c) => c,
        Err(what) => return closing(unauthorized(what)),
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > super::MAX_BODY as u64) {
        return closing(too_large());
    }
    let (read, parsed) = read_entries(body, engine.config.http.body_timeout).await;
    let respond = |res: Response| {
        if read == Reading::Whole {
            res
        } else {
            closing(res)
        }
    };
    match read {
        Reading::TooLarge => return closing(too_large()),
        Reading::TimedOut => {
            let what = format!(
                "not received whole within {} ([http] body_timeout)",
                humantime::format_duration(engine.config.http.body_timeout)
            );
            return closing(problems(
                StatusCode::REQUEST_TIMEOUT,
                "invalid body",
                vec![Problem::new("body", what)],
            ));
        }
        Reading::Failed(what) => {
            return closing(problems(
                StatusCode::BAD_REQUEST,
                "invalid body",
                vec![Problem::new("body", what)],
            ));
        }
        Reading::Whole | Reading::Stopped => {}
    }
    let Entries {
        mut rows,
        problems: mut list,
    } = match parsed {
        Ok(e) => e,
        Err(BodyError::TooMany) => {
            return respond(problems(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid request",
                vec![BodyError::TooMany.problem()],
            ));
        }
        Err(e) => {
            return respond(problems(
                StatusCode::BAD_REQUEST,
                "invalid body",
                vec![e.problem()],
            ));
        }
    };
    // Scope first: a token may not even learn whether another system's
    // orders exist.
    if let Some(row) = rows.iter().find(|r| !caller.may_use(&r.system_id)) {
        let at = format!("orders[{}].system_id", row.line - 1);
        return respond(forbidden(&caller, &at, &row.system_id));
    }
    // The rows' own rules (a NUL, a length) before the store reads
    // anything for them: a value PostgreSQL cannot compare is the entry's
    // problem (422), as on sled, never the store's failure (500).
    rows.retain(|row| match row.check() {
        Ok(()) => true,
        Err(p) => {
            list.push(located(p));
            false
        }
    });
    if rows.is_empty() && list.is_empty() {
        return json_body(
            StatusCode::OK,
            json!({"marked": 0, "regulated": 0}).to_string(),
        );
    }
    let source = format!("HTTP mark-as-exported, token {:?}", caller.token.name);
    let token = caller.token.name.clone();
    let engine = engine.clone();
    let result = tokio::task::spawn_blocking(move || {
        let ctx = Context {
            now: engine.store.now().timestamp_millis(),
            systems: &engine.config.systems,
            allow_negative: engine.config.inventory.allow_negative,
            only_system: None,
        };
        // With problems of the shape, the well-formed rows are still
        // checked against the store (and nothing is applied), so the
        // answer lists every problem.
        let r = engine.store.mark_exported(&rows, &list, &source, &ctx);
        if r.is_ok() {
            engine.store.flush()?;
        }
        Ok::<_, crate::store::StoreError>(r)
    })
    .await;
    match result {
        Ok(Ok(Ok(summary))) => {
            tracing::info!(token = %token, acks = summary.acks, regulated = summary.regulated, "HTTP mark-as-exported applied");
            let body = json!({"marked": summary.acks, "regulated": summary.regulated});
            json_body(StatusCode::OK, body.to_string())
        }
        Ok(Ok(Err(ApplyError::Rejected(list)))) => {
            let mut list: Vec<Problem> = list.into_iter().map(located).collect();
            list.sort_by_key(entry_index);
            problems(StatusCode::UNPROCESSABLE_ENTITY, "invalid request", list)
        }
        Ok(Ok(Err(e))) => server_error(&e.to_string()),
        Ok(Err(e)) => server_error(&e.to_string()),
        Err(e) => server_error(&e.to_string()),
    }
}

/// How much of the body was read.
#[derive(Debug, PartialEq, Eq)]
enum Reading {
    /// All of it.
    Whole,
    /// The parser stopped before the end (too many entries, bad JSON).
    Stopped,
    /// It went over [`super::MAX_BODY`].
    TooLarge,
    /// It did not come whole within the body timeout.
    TimedOut,
    /// The connection failed while reading it.
    Failed(String),
}

/// Reads the body into the parser as it arrives: the parser runs on the
/// blocking pool and pulls chunks through a small channel, so at most
/// [`CHUNKS_IN_FLIGHT`] chunks are held whatever the body's size.
async fn read_entries(
    body: Body,
    timeout: std::time::Duration,
) -> (Reading, Result<Entries, BodyError>) {
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(CHUNKS_IN_FLIGHT);
    let parser = tokio::task::spawn_blocking(move || entries::parse(Chunks::new(rx)));
    let deadline = tokio::time::Instant::now() + timeout;
    let pump = async move {
        let mut stream = body.into_data_stream();
        let mut total = 0usize;
        loop {
            use tokio_stream::StreamExt;
            let next = match tokio::time::timeout_at(deadline, stream.next()).await {
                Ok(next) => next,
                Err(_) => return (Reading::TimedOut, Some(tx)),
            };
            let chunk = match next {
                None => return (Reading::Whole, None),
                Some(Ok(chunk)) => chunk,
                Some(Err(e)) => return (Reading::Failed(format!("cannot read: {e}")), Some(tx)),
            };
            total += chunk.len();
            if total > super::MAX_BODY {
                return (Reading::TooLarge, Some(tx));
            }
            if tx.send(Ok(chunk)).await.is_err() {
                // The parser is done before the end of the body.
                return (Reading::Stopped, None);
            }
        }
    };
    tokio::pin!(parser);
    tokio::pin!(pump);
    let mut read = None;
    let parsed = loop {
        tokio::select! {
            biased;
            (r, tx) = &mut pump, if read.is_none() => {
                // On an error the parser is told at once (at the end of
                // the body, `tx` is dropped: the parser sees its end).
                if let Some(tx) = tx {
                    let _ = tx.send(Err(std::io::Error::other("the body was not read whole"))).await;
                }
                read = Some(r);
            }
            parsed = &mut parser => break parsed,
        }
    };
    // The parser finished before the body's end: it stopped early.
    let read = read.unwrap_or(Reading::Stopped);
    let parsed = parsed.unwrap_or_else(|e| {
        Err(BodyError::NotJson(serde_json::Error::io(
            std::io::Error::other(e.to_string()),
        )))
    });
    (read, parsed)
}

/// The body's chunks as a [`Read`] for the parser, on the blocking pool:
/// it waits for the next chunk as the connection delivers it.
struct Chunks {
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
    chunk: Bytes,
}

impl Chunks {
    fn new(rx: mpsc::Receiver<std::io::Result<Bytes>>) -> Chunks {
        Chunks {
            rx,
            chunk: Bytes::new(),
        }
    }
}

impl Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

/// The 413 answer.
fn too_large() -> Response {
    problems(
        StatusCode::PAYLOAD_TOO_LARGE,
        "invalid body",
        vec![Problem::new(
            "body",
            format!("larger than {} bytes", super::MAX_BODY),
        )],
    )
}

/// `res`, closing the connection after it: the rest of the body is not
/// read (nor drained) for an answer given before its end.
fn closing(mut res: Response) -> Response {
    res.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    res
}

/// A problem's entry (`orders[3]…` → 3), for the answer's order; problems
/// of no entry first.
fn entry_index(p: &Problem) -> Option<usize> {
    p.at.strip_prefix("orders[")?
        .split(']')
        .next()?
        .parse()
        .ok()
}

/// A store problem names the row as `line N` (N = index + 1, as given
/// below); over HTTP it is the entry and field: `orders[3].order_id`.
fn located(p: Problem) -> Problem {
    let n = p.line();
    if n == 0 {
        return p;
    }
    let field = if p.what.starts_with("unknown order") || p.what.starts_with("order_id") {
        ".order_id"
    } else if p.what.starts_with("unknown system") || p.what.starts_with("system_id") {
        ".system_id"
    } else if p.what.starts_with("note") {
        ".note"
    } else {
        ".regulate_inventory"
    };
    Problem::new(format!("orders[{}]{field}", n - 1), p.what)
}
