//! Writes the man pages and shell completions the Debian package ships,
//! generated from the real command line definition (`ordersync::cli::Cli`),
//! so they can never drift from the binary:
//!
//! ```sh
//! cargo run --example deb-assets -- target/assets
//! ```
//!
//! `contrib/deb/build` runs this before `cargo deb`. (An example rather than a
//! build script: the CLI types live in the library, which a build script
//! cannot use, and the generators stay out of the shipped binary.)
//! `tests/man_pages.rs` includes this file to check the pages it writes.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::CommandFactory as _;
use clap_complete::Shell;

fn main() -> anyhow::Result<()> {
    let out = PathBuf::from(
        std::env::args_os()
            .nth(1)
            .context("usage: deb-assets OUT_DIR")?,
    );
    let man = out.join("man");
    let completions = out.join("completions");
    for d in [&man, &completions] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let cmd = ordersync::cli::Cli::command();
    man_pages(cmd.clone(), &man)
        .with_context(|| format!("writing man pages into {}", man.display()))?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd.clone(), "ordersync", &completions)
            .with_context(|| format!("writing {shell} completions"))?;
    }
    println!("wrote {} and {}", man.display(), completions.display());
    Ok(())
}

/// `ordersync.1` plus one page per subcommand (`ordersync-run.1`, …), as
/// `clap_mangen::generate_to` writes them, each with the sections clap
/// cannot derive (`ordersync::cli::MAN_SECTIONS`: EXIT STATUS, ENVIRONMENT,
/// FILES) after its options and before VERSION.
pub fn man_pages(cmd: clap::Command, dir: &Path) -> std::io::Result<()> {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    write_pages(cmd, dir)
}

/// The SYNOPSIS section, with each option's value (clap_mangen 0.3 writes
/// `[--config]` for `--config PATH`, as if it were a flag).
fn synopsis(cmd: &clap::Command) -> roff::Roff {
    let name = cmd.get_bin_name().unwrap_or_else(|| cmd.get_name());
    let mut line = vec![roff::bold(name)];
    let value = |a: &clap::Arg| match a.get_value_names() {
        Some(names) => names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        None => vec![a.get_id().as_str().to_uppercase()],
    };
    for a in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
        let (open, close) = if a.is_required_set() {
            ("", "")
        } else {
            ("[", "]")
        };
        line.push(roff::roman(format!(" {open}")));
        if a.is_positional() {
            line.push(roff::italic(value(a).join(" ")));
        } else {
            let names: Vec<String> = a
                .get_short()
                .map(|s| format!("-{s}"))
                .into_iter()
                .chain(a.get_long().map(|l| format!("--{l}")))
                .collect();
            line.push(roff::bold(names.join("|")));
            if a.get_action().takes_values() {
                line.push(roff::roman(" "));
                line.push(roff::italic(value(a).join(" ")));
            }
        }
        let many = a.get_num_args().is_some_and(|n| n.max_values() > 1);
        line.push(roff::roman(format!(
            "{}{close}",
            if many { "..." } else { "" }
        )));
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        line.push(roff::roman(" "));
        line.push(roff::italic("<command>"));
    }
    let mut section = roff::Roff::new();
    section.control("SH", ["SYNOPSIS"]);
    section.text(line);
    section
}

fn write_pages(cmd: clap::Command, dir: &Path) -> std::io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub.clone(), dir)?;
    }
    let man = clap_mangen::Man::new(cmd.clone());
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    synopsis(&cmd).to_writer(&mut page)?;
    man.render_description_section(&mut page)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut page)?;
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        man.render_subcommands_section(&mut page)?;
    }
    let mut extra = roff::Roff::new();
    for (title, entries) in ordersync::cli::MAN_SECTIONS {
        extra.control("SH", [*title]);
        for (term, text) in *entries {
            extra.control("TP", []);
            extra.text([roff::bold(*term)]);
            extra.text([roff::roman(*text)]);
        }
    }
    extra.to_writer(&mut page)?;
    if cmd
        .get_version()
        .or_else(|| cmd.get_long_version())
        .is_some()
    {
        man.render_version_section(&mut page)?;
    }
    std::fs::write(dir.join(man.get_filename()), page)
}
