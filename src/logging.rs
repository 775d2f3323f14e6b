//! Logging set-up for the binary: plain text on stderr, and syslog
//! priorities for journald when stderr is the journal.
//!
//! Under systemd, stderr is a stream to journald and `JOURNAL_STREAM` holds
//! its `device:inode`. Then every line starts with an sd-daemon(3) priority
//! prefix (`<3>` error, `<4>` warning, `<6>` info, `<7>` debug and trace),
//! which journald strips and stores as the entry's priority (the unit's
//! default `SyslogLevelPrefix=yes`), so `journalctl -u ordersync -p warning`
//! shows exactly the warnings and errors. journald stamps entries itself, so
//! the timestamp is left out there. The structured fields (`file=`,
//! `system=`, `count=`…) stay in the text, as on a terminal.
//!
//! `JOURNAL_STREAM` is only trusted when it names the file stderr really is
//! (a child whose stderr was redirected inherits the variable too).

use std::io::IsTerminal as _;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::{FmtContext, format};
use tracing_subscriber::registry::LookupSpan;

/// Installs the global subscriber: level from `RUST_LOG` (default
/// `default`), output on stderr, colours only on a terminal, priority
/// prefixes when stderr is the journal.
pub fn init(default: Level) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(default.as_str().to_ascii_lowercase()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if stderr_is_journal() {
        builder
            .with_ansi(false)
            .event_format(PriorityPrefix(format().without_time()))
            .init();
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    }
}

/// True when `JOURNAL_STREAM` (`DEVICE:INODE`) names stderr's file.
pub fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    // st_dev and st_ino are not u64 on every target.
    #[allow(clippy::unnecessary_cast)]
    match rustix::fs::fstat(std::io::stderr()) {
        Ok(st) => st.st_dev as u64 == dev && st.st_ino as u64 == ino,
        Err(_) => false,
    }
}

/// Prints the message a failing command exits with on stderr, each line at
/// error priority when stderr is the journal. A stderr that cannot be
/// written (a closed pipe) is left at that: `eprintln!` would panic.
pub fn fatal(message: &str) {
    use std::io::Write as _;
    let mut stderr = std::io::stderr().lock();
    let _ = if stderr_is_journal() {
        message
            .lines()
            .try_for_each(|line| writeln!(stderr, "<3>{line}"))
    } else {
        writeln!(stderr, "{message}")
    };
}

/// The syslog priority journald understands for a tracing level.
pub fn priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// Wraps a formatter and starts every line of its output with `<N>`: a
/// message that spans lines keeps its priority on each of them.
struct PriorityPrefix<F>(F);

impl<S, N, F> FormatEvent<S, N> for PriorityPrefix<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut text = String::new();
        self.0.format_event(ctx, Writer::new(&mut text), event)?;
        let p = priority(*event.metadata().level());
        for line in text.lines() {
            writeln!(writer, "<{p}>{line}")?;
        }
        Ok(())
    }
}
