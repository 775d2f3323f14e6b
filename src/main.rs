//! The `ordersync` binary: parses the command line, sets up logging and hands
//! over to the library. Exit codes: 0 success, 1 runtime failure, 2 usage or
//! config error.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of the system allocator: sled copies a tree node per
/// key it writes, and glibc's malloc spent a third of the CPU time of an
/// ingest on those copies (see docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's option numbers, from the `mimalloc.h` (v3) that
/// libmimalloc-sys 0.1.49 builds (the crate does not name these two; the
/// test below checks they still mean what they say).
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Memory freed is given back to the system at once, and arenas are
/// committed as used: a daemon's resident memory then follows what it
/// holds. Measured on a 10,000-order file: peak RSS 201 → 136 MiB, and
/// faster (fewer fresh pages to zero).
///
/// No transparent huge pages for this process: mimalloc asks for them,
/// and a 2 MiB page is resident (and zeroed) as a whole however little of
/// it is used. Measured on 10,000 single-order files: peak RSS 158 → 116
/// MiB at the same speed. The kernel's flag covers every later mapping,
/// so setting it here is enough although mimalloc started before `main`.
fn tune_allocator() {
    // SAFETY: plain setters of mimalloc's global options, called before
    // any other thread exists.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
        libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0);
    }
    // Fails only on kernels before 3.15, which then keep their default.
    let _ = rustix::thread::disable_transparent_huge_pages(true);
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = ordersync::cli::Cli::parse();
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    ordersync::logging::init(cli.command.log_level());
    match ordersync::cli::run(cli, &args) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of stdout went away (`ordersync check | head -1`): it
        // wanted no more, so no message and no failure.
        Err(_) if ordersync::cli::stdout_closed() => ExitCode::SUCCESS,
        Err(e) => {
            ordersync::logging::fatal(&format!("ordersync: {e:#}"));
            ExitCode::from(e.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults of the two options (purge delay 1,000 ms, arena eager
    /// commit 2, in mimalloc's `src/options.c`) identify them: if a new mimalloc renumbers its
    /// options, this fails rather than `tune_allocator` setting others.
    #[test]
    fn the_option_numbers_are_mimallocs() {
        // SAFETY: reads of mimalloc's global options.
        let (delay, eager) = unsafe {
            (
                libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY),
                libmimalloc_sys::mi_option_get(MI_OPTION_ARENA_EAGER_COMMIT),
            )
        };
        assert_eq!((delay, eager), (1000, 2));
    }
}
