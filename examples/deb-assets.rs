//! Writes the man pages and shell completions the Debian package ships,
//! generated from the real command line definition (`ordersync::cli::Cli`)
//! and, for the config file's page (`ordersync.toml(5)`), from the key
//! tables of `docs/CONTRACT.md` section 2 (which a test of `config/mod.rs`
//! keeps equal to the keys the config accepts). They are kept in the
//! repository, in `contrib/man/` and `contrib/completions/`:
//!
//! ```sh
//! cargo run --example deb-assets -- contrib
//! ```
//!
//! `tests/man_pages.rs` includes this file, checks the pages it writes and
//! fails when the ones in `contrib/` are not what it writes now (run the
//! command above and commit). (An example rather than a build script: the
//! CLI types live in the library, which a build script cannot use, and the
//! generators stay out of the shipped binary.)

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
    write_all(&out)?;
    println!(
        "wrote {} and {}",
        out.join("man").display(),
        out.join("completions").display()
    );
    Ok(())
}

/// Every page and completion, into `out/man` and `out/completions`.
pub fn write_all(out: &Path) -> anyhow::Result<()> {
    let man = out.join("man");
    let completions = out.join("completions");
    for d in [&man, &completions] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let cmd = ordersync::cli::Cli::command();
    man_pages(cmd.clone(), &man)
        .with_context(|| format!("writing man pages into {}", man.display()))?;
    config_page(&man)
        .with_context(|| format!("writing the config's page into {}", man.display()))?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd.clone(), "ordersync", &completions)
            .with_context(|| format!("writing {shell} completions"))?;
    }
    Ok(())
}

/// `ordersync.toml.5`: every key of the config file, with its default and
/// meaning, as CONTRACT.md section 2 gives them (its key tables and the
/// notes between them).
pub fn config_page(dir: &Path) -> std::io::Result<()> {
    let contract = include_str!("../docs/CONTRACT.md");
    let section = contract
        .split("\n## 2. ")
        .nth(1)
        .and_then(|s| s.split("\n## 3. ").next())
        .unwrap_or_default();
    let mut page = roff::Roff::new();
    let version = env!("CARGO_PKG_VERSION");
    page.control(
        "TH",
        ["ordersync.toml", "5", "", &format!("ordersync {version}")],
    );
    page.control("SH", ["NAME"]);
    page.text([roff::roman(
        "ordersync.toml - the configuration file of ordersync",
    )]);
    page.control("SH", ["DESCRIPTION"]);
    let mut paragraph: Vec<String> = Vec::new();
    let flush = |page: &mut roff::Roff, paragraph: &mut Vec<String>| {
        if !paragraph.is_empty() {
            page.control("PP", []);
            page.text([roff::roman(plain(&paragraph.join(" ")))]);
            paragraph.clear();
        }
    };
    // The first line is the section's title.
    for line in section.lines().skip(1) {
        if let Some(heading) = line.strip_prefix("### ") {
            flush(&mut page, &mut paragraph);
            page.control("SH", [plain(heading).as_str()]);
        } else if let Some(row) = line.strip_prefix("| `") {
            flush(&mut page, &mut paragraph);
            // | `key` | default | meaning |
            let row = format!("`{row}");
            let cells: Vec<&str> = row
                .split(" | ")
                .map(|c| c.trim().trim_matches('|').trim())
                .collect();
            let [key, default, meaning, ..] = cells.as_slice() else {
                continue;
            };
            page.control("TP", []);
            page.text([roff::bold(plain(key))]);
            page.text([roff::roman(format!(
                "Default: {}. {}",
                plain(default),
                plain(meaning)
            ))]);
        } else if line.starts_with('|') {
            // The tables' header and rule.
        } else if line.trim().is_empty() {
            flush(&mut page, &mut paragraph);
        } else {
            paragraph.push(line.trim().to_string());
        }
    }
    flush(&mut page, &mut paragraph);
    page.control("SH", ["SEE ALSO"]);
    page.text([roff::roman(
        "ordersync(1); CONTRACT.md (the contract: file formats, the CLI, the guarantees) and GUIDE.md, in /usr/share/doc/ordersync.",
    )]);
    std::fs::write(dir.join("ordersync.toml.5"), page.render())
}

/// Markdown's inline marks taken out: code spans keep their text, links
/// their words.
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match (after.find("]("), after.find(')')) {
            (Some(close), Some(end)) if close < end && !after[..close].contains('`') => {
                out.push_str(&after[..close]);
                rest = &after[end + 1..];
            }
            _ => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out.replace('`', "").replace("**", "")
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
