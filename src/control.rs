//! The control socket: `<state>/ordersync.sock`, mode 0600. sled lets one
//! process open the database, so while the daemon runs it answers the CLI's
//! store commands (`status`, `orders`, `inventory`, `reexport`) itself. One
//! JSON request line in (the command line's arguments), one JSON answer out
//! (exit code, stdout, stderr).
//!
//! A request is bounded in size ([`MAX_REQUEST`]) and time ([`DEADLINE`],
//! for the whole request, not per read), and each client is served on its
//! own thread, at most [`MAX_CLIENTS`] at once (more wait, unaccepted, in
//! the kernel's backlog until one is done): a slow or hostile client can
//! neither exhaust memory nor hold up `status` for everyone else, and the
//! daemon's loop never waits on the socket.

use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use serde::{Deserialize, Serialize};

use crate::cli::{Cli, Command, execute};
use crate::config::Config;
use crate::engine::{Engine, EngineError};
use crate::store::{Store, StoreError};

/// The socket's file name inside the state folder.
pub const SOCKET: &str = "ordersync.sock";

/// A command line, as the CLI got it (without the program name).
#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    pub args: Vec<String>,
}

/// What the command printed and its exit code.
#[derive(Debug, Serialize, Deserialize)]
pub struct Response {
    pub code: u8,
    pub stdout: String,
    pub stderr: String,
}

/// How long opening the store waits for another process that holds it
/// without being a daemon: a CLI command, a `run --once`, or a process that
/// just exited (sled releases its lock a moment after the database closes).
pub const LOCK_WAIT: Duration = Duration::from_secs(10);

/// The longest request line accepted (a command line is a few hundred
/// bytes).
pub const MAX_REQUEST: usize = 64 * 1024;
/// The time a client has to send its whole request.
pub const DEADLINE: Duration = Duration::from_secs(5);
/// Clients served at once; more wait for one of them to finish (each has
/// at most [`DEADLINE`] to send its request).
pub const MAX_CLIENTS: usize = 16;

/// Whether opening the store may create it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// `run --once`, `status --wait` and `restore`: create the folders and
    /// the database if missing; on PostgreSQL a process alone holds the
    /// writer's lease ([`Engine::open`]).
    Create,
    /// The daemon: as [`OpenMode::Create`], taking the writer's lease only
    /// when it leads ([`Engine::open_for_daemon`]).
    Daemon,
    /// Every other command: the database must exist
    /// ([`StoreError::Missing`]); nothing is created.
    Existing,
}

/// Opens the store for this process. A running daemon holding it (its
/// control socket answers) is an error at once; any other holder is waited
/// for, up to [`LOCK_WAIT`]. Only [`OpenMode::Create`] creates anything.
pub fn open_engine(config: &Config, mode: OpenMode) -> Result<Engine, EngineError> {
    let start = std::time::Instant::now();
    let open = || match mode {
        OpenMode::Create => Engine::open(config.clone()),
        OpenMode::Daemon => Engine::open_for_daemon(config.clone()),
        OpenMode::Existing => Ok(Engine {
            config: config.clone(),
            store: Store::open_existing(&config.paths.state, &config.store)?,
        }),
    };
    loop {
        match open() {
            Err(EngineError::Store(StoreError::Locked(_)))
                if start.elapsed() < LOCK_WAIT
                    && UnixStream::connect(socket_path(&config.paths.state)).is_err() =>
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// The socket path for a state folder.
pub fn socket_path(state: &Path) -> PathBuf {
    state.join(SOCKET)
}

/// Connects to a running daemon and sends it `args` as a request (its
/// writing side then closed). `None` when no daemon listens (no socket, or
/// a stale one left by a killed daemon).
fn send(state: &Path, args: &[String], read_timeout: Duration) -> io::Result<Option<UnixStream>> {
    let path = socket_path(state);
    let mut stream = match UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    stream.set_read_timeout(Some(read_timeout))?;
    let request = serde_json::to_string(&Request {
        args: args.to_vec(),
    })?;
    stream.write_all(request.as_bytes())?;
    stream.write_all(b"\n")?;
    stream.shutdown(std::net::Shutdown::Write)?;
    Ok(Some(stream))
}

/// Asks a running daemon to run `args`, collecting what it prints. `None`
/// when no daemon listens.
pub fn ask(state: &Path, args: &[String]) -> io::Result<Option<Response>> {
    let mut stdout = Vec::new();
    Ok(
        ask_to(state, args, &mut stdout)?.map(|(code, stderr)| Response {
            code,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr,
        }),
    )
}

/// Asks a running daemon to run `args`, copying what it prints to `out` as
/// it arrives (a listing of a million orders is never held whole, here or
/// in the daemon). The exit code and the error text once it is done;
/// `None` when no daemon listens.
pub fn ask_to(
    state: &Path,
    args: &[String],
    out: &mut dyn Write,
) -> io::Result<Option<(u8, String)>> {
    use std::io::BufRead;
    let Some(stream) = send(state, args, STREAM_STALL)? else {
        return Ok(None);
    };
    let bad = |e: serde_json::Error| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad answer from the daemon: {e}"),
        )
    };
    let mut reader = io::BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the daemon closed the socket before its answer's end (see the daemon's log)",
            ));
        }
        match serde_json::from_slice::<Frame>(&line).map_err(bad)? {
            Frame::Out { out: text } => out.write_all(text.as_bytes())?,
            Frame::Done(r) => {
                out.write_all(r.stdout.as_bytes())?;
                return Ok(Some((r.code, r.stderr)));
            }
        }
    }
}

/// One line of an answer on the socket: a piece of what the command
/// printed, or the closing [`Response`] (exit code and error text).
#[derive(Deserialize)]
#[serde(untagged)]
enum Frame {
    Out { out: String },
    Done(Response),
}

/// What a command prints through the socket, as `{"out": TEXT}` lines of
/// at most [`FRAME`] bytes of text each, written as the command goes.
struct Frames<W: Write> {
    inner: W,
    buf: Vec<u8>,
}

/// The text one `{"out": …}` line carries at most.
const FRAME: usize = 64 * 1024;

impl<W: Write> Frames<W> {
    /// Sends the buffered text up to its last whole UTF-8 character (all of
    /// it when `all`: a command prints UTF-8, so nothing is left).
    fn send(&mut self, all: bool) -> io::Result<()> {
        let whole = match std::str::from_utf8(&self.buf) {
            Ok(_) => self.buf.len(),
            Err(e) if !all => e.valid_up_to(),
            Err(_) => self.buf.len(),
        };
        if whole == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&self.buf[..whole]);
        #[derive(Serialize)]
        struct Out<'a> {
            out: &'a str,
        }
        let mut line = serde_json::to_vec(&Out { out: &text })?;
        line.push(b'\n');
        self.inner.write_all(&line)?;
        self.buf.drain(..whole);
        Ok(())
    }
}

impl<W: Write> Write for Frames<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= FRAME {
            self.send(false)?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send(true)?;
        self.inner.flush()
    }
}

/// Asks a running daemon for a dump and copies it to `out`, checking that
/// it arrived whole (its closing line). `None` when no daemon listens.
pub fn ask_dump(state: &Path, args: &[String], out: &mut dyn Write) -> anyhow::Result<Option<u64>> {
    use anyhow::Context as _;
    use std::io::BufRead;
    let Some(stream) = send(state, args, STREAM_STALL).context("asking the running daemon")? else {
        return Ok(None);
    };
    let mut reader = io::BufReader::with_capacity(1 << 20, stream);
    let mut line = Vec::new();
    let mut last = Vec::new();
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .context("reading the dump from the daemon")?;
        if n == 0 {
            break;
        }
        if line.starts_with(br#"{"code":"#) {
            let answer: Response = serde_json::from_slice(&line)
                .map_err(|e| anyhow::anyhow!("bad answer from the daemon: {e}"))?;
            anyhow::bail!(crate::cli::CliError::Remote {
                code: answer.code,
                message: answer.stderr,
            });
        }
        out.write_all(&line).context("writing the dump")?;
        std::mem::swap(&mut last, &mut line);
    }
    let end: Option<crate::store::dump::Trailer> = serde_json::from_slice(&last).ok();
    match end {
        Some(end) if end.format == crate::store::dump::END => Ok(Some(end.records)),
        _ => anyhow::bail!("the daemon's dump stopped before its end (see the daemon's log)"),
    }
}

/// How long the reader or writer of a streamed answer (a dump, a listing
/// read by a pager that waits) may stall before the other side gives up.
pub const STREAM_STALL: Duration = Duration::from_secs(120);

/// The listening socket; removed when dropped.
pub struct Server {
    path: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds the socket (replacing a stale one: the caller holds the store's
/// lock, so no other daemon owns it) and answers requests, each client on
/// its own thread. `changed` is called after a command that changed the
/// store.
pub fn serve(
    engine: Arc<Engine>,
    changed: impl Fn() + Send + Sync + 'static,
) -> io::Result<Server> {
    let path = socket_path(&engine.config.paths.state);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    // Bound under a hidden name and made private before it takes its
    // name: a client never finds it with the umask's wider mode.
    let hidden = path.with_file_name(format!(".{SOCKET}.{}", std::process::id()));
    let _ = std::fs::remove_file(&hidden);
    let listener = UnixListener::bind(&hidden)?;
    std::fs::set_permissions(&hidden, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&hidden, &path)?;
    let changed = Arc::new(changed);
    let slots = Arc::new(Slots::default());
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            loop {
                // With every slot taken, nothing is accepted: a new client
                // waits in the kernel's backlog (its `connect` blocks when
                // that is full) instead of being refused or reset.
                let slot = Slots::take(&slots);
                let stream = match listener.accept() {
                    Ok((s, _)) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "control socket accept failed");
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                };
                let (engine, changed) = (engine.clone(), changed.clone());
                let spawned = std::thread::Builder::new()
                    .name("control-client".into())
                    .spawn(move || {
                        if let Err(e) = answer(&engine, stream, &*changed) {
                            tracing::warn!(error = %e, "control socket request failed");
                        }
                        drop(slot);
                    });
                if let Err(e) = spawned {
                    tracing::warn!(error = %e, "control socket: cannot start a thread");
                }
            }
        })?;
    Ok(Server { path })
}

/// The clients being served, at most [`MAX_CLIENTS`].
#[derive(Default)]
struct Slots {
    used: Mutex<usize>,
    freed: Condvar,
}

/// One client's place among [`MAX_CLIENTS`]; given back when dropped.
struct Slot(Arc<Slots>);

impl Slots {
    /// Waits for a free place and takes it.
    fn take(slots: &Arc<Slots>) -> Slot {
        // A counter cannot be left inconsistent by a panic: go on with it.
        let mut used = slots.used.lock().unwrap_or_else(|e| e.into_inner());
        while *used >= MAX_CLIENTS {
            used = slots.freed.wait(used).unwrap_or_else(|e| e.into_inner());
        }
        *used += 1;
        Slot(slots.clone())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut used = self.0.used.lock().unwrap_or_else(|e| e.into_inner());
        *used = used.saturating_sub(1);
        self.0.freed.notify_one();
    }
}

/// Reads one request line: at most [`MAX_REQUEST`] bytes, all within
/// [`DEADLINE`]. `Ok(None)` when the client sent more than that.
fn read_request(stream: &mut UnixStream) -> io::Result<Option<Vec<u8>>> {
    let deadline = Instant::now() + DEADLINE;
    let mut line = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no complete request within {DEADLINE:?}"),
            ));
        }
        stream.set_read_timeout(Some(left))?;
        let n = match stream.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let chunk = &buf[..n];
        let end = chunk.iter().position(|&b| b == b'\n');
        line.extend_from_slice(&chunk[..end.unwrap_or(n)]);
        if line.len() > MAX_REQUEST {
            return Ok(None);
        }
        if n == 0 || end.is_some() {
            return Ok(Some(line));
        }
    }
}

fn answer(engine: &Engine, mut stream: UnixStream, changed: &dyn Fn()) -> io::Result<()> {
    let response = match read_request(&mut stream)? {
        None => {
            tracing::warn!(
                max = MAX_REQUEST,
                "control socket: request too large, refused"
            );
            Response {
                code: 2,
                stdout: String::new(),
                stderr: format!("request larger than {MAX_REQUEST} bytes: refused"),
            }
        }
        Some(line) => match command_of(&line) {
            Err(refused) => refused,
            Ok(Command::Dump { .. }) => return dump(engine, stream),
            Ok(command) => return run(engine, command, changed, stream),
        },
    };
    stream.set_write_timeout(Some(DEADLINE))?;
    stream.write_all(serde_json::to_string(&response)?.as_bytes())
}

/// Streams a dump to the client; a failure after it started is a
/// [`Response`] line the client reports (the dump then has no closing line).
fn dump(engine: &Engine, mut stream: UnixStream) -> io::Result<()> {
    stream.set_write_timeout(Some(STREAM_STALL))?;
    let started = Instant::now();
    match engine.store.dump_to(&mut stream) {
        Ok(records) => {
            tracing::info!(records, took = ?started.elapsed(), "dump written to a client");
            Ok(())
        }
        Err(e) => {
            tracing::warn!(error = %e, "dump failed");
            let response = Response {
                code: 1,
                stdout: String::new(),
                stderr: format!("dumping the store: {e}"),
            };
            stream.write_all(b"\n")?;
            stream.write_all(serde_json::to_string(&response)?.as_bytes())?;
            stream.write_all(b"\n")
        }
    }
}

/// A request line as a command, parsed with the CLI's own clap types, or
/// the answer refusing it (exit code 2). Needs no store (the fuzz target
/// `control_request` calls it).
#[doc(hidden)]
pub fn command_of(line: &[u8]) -> Result<Command, Response> {
    let usage = |stderr: String| Response {
        code: 2,
        stdout: String::new(),
        stderr,
    };
    let req =
        serde_json::from_slice::<Request>(line).map_err(|e| usage(format!("bad request: {e}")))?;
    let argv = std::iter::once("ordersync".to_string()).chain(req.args);
    Cli::try_parse_from(argv)
        .map(|cli| cli.command)
        .map_err(|e| usage(e.to_string()))
}

/// Runs `command`, streaming what it prints to the client as it goes
/// ([`Frames`]), then its [`Response`] (exit code, error text) as the
/// closing line.
fn run(
    engine: &Engine,
    command: Command,
    changed: &dyn Fn(),
    stream: UnixStream,
) -> io::Result<()> {
    stream.set_write_timeout(Some(STREAM_STALL))?;
    let writes = matches!(command, Command::Reexport { .. });
    let mut frames = Frames {
        inner: io::BufWriter::new(stream),
        buf: Vec::new(),
    };
    let done = execute(engine, command, &mut frames);
    let response = match done {
        Ok(()) => {
            if writes {
                changed();
            }
            Response {
                code: 0,
                stdout: String::new(),
                stderr: String::new(),
            }
        }
        Err(e) => Response {
            code: e.exit_code(),
            stdout: String::new(),
            stderr: e.to_string(),
        },
    };
    frames.send(true)?;
    let mut line = serde_json::to_vec(&response)?;
    line.push(b'\n');
    frames.inner.write_all(&line)?;
    frames.inner.flush()
}
