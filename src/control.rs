//! The control socket: `<state>/ordersync.sock`, mode 0600. sled lets one
//! process open the database, so while the daemon runs it answers the CLI's
//! store commands (`status`, `orders`, `inventory`, `reexport`) itself. One
//! JSON request line in (the command line's arguments), one JSON answer out
//! (exit code, stdout, stderr).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use serde::{Deserialize, Serialize};

use crate::cli::{Cli, Command, execute};
use crate::config::Config;
use crate::engine::{Engine, EngineError};
use crate::store::StoreError;

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

/// Opens the store for this process. A running daemon holding it (its
/// control socket answers) is an error at once; any other holder is waited
/// for, up to [`LOCK_WAIT`].
pub fn open_engine(config: &Config) -> Result<Engine, EngineError> {
    let start = std::time::Instant::now();
    loop {
        match Engine::open(config.clone()) {
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

/// Asks a running daemon to run `args`. `None` when no daemon listens (no
/// socket, or a stale one left by a killed daemon).
pub fn ask(state: &Path, args: &[String]) -> io::Result<Option<Response>> {
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
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let request = serde_json::to_string(&Request {
        args: args.to_vec(),
    })?;
    stream.write_all(request.as_bytes())?;
    stream.write_all(b"\n")?;
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    serde_json::from_str(&answer).map(Some).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad answer from the daemon: {e}"),
        )
    })
}

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
/// lock, so no other daemon owns it) and answers requests on a thread.
/// `changed` is called after a command that changed the store.
pub fn serve(engine: Arc<Engine>, changed: impl Fn() + Send + 'static) -> io::Result<Server> {
    let path = socket_path(&engine.config.paths.state);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(s) => {
                        if let Err(e) = answer(&engine, s, &changed) {
                            tracing::warn!(error = %e, "control socket request failed");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "control socket accept failed");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })?;
    Ok(Server { path })
}

fn answer(engine: &Engine, stream: UnixStream, changed: &impl Fn()) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    let response = match serde_json::from_str::<Request>(&line) {
        Err(e) => Response {
            code: 2,
            stdout: String::new(),
            stderr: format!("bad request: {e}"),
        },
        Ok(req) => run(engine, req, changed),
    };
    let mut stream = stream;
    stream.write_all(serde_json::to_string(&response)?.as_bytes())
}

fn run(engine: &Engine, req: Request, changed: &impl Fn()) -> Response {
    let argv = std::iter::once("ordersync".to_string()).chain(req.args);
    let command = match Cli::try_parse_from(argv) {
        Ok(cli) => cli.command,
        Err(e) => {
            return Response {
                code: 2,
                stdout: String::new(),
                stderr: e.to_string(),
            };
        }
    };
    let writes = matches!(command, Command::Reexport { .. });
    match execute(engine, command) {
        Ok(stdout) => {
            if writes {
                changed();
            }
            Response {
                code: 0,
                stdout,
                stderr: String::new(),
            }
        }
        Err(e) => Response {
            code: e.exit_code(),
            stdout: String::new(),
            stderr: e.to_string(),
        },
    }
}
