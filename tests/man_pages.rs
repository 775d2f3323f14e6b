//! The man pages the Debian package ships (written by
//! `examples/deb-assets.rs`, included here): besides what clap derives,
//! every page has EXIT STATUS, ENVIRONMENT and FILES sections, and they say
//! what the binary does (the config's search path, the exit codes).

use clap::CommandFactory as _;

#[allow(dead_code)]
#[path = "../examples/deb-assets.rs"]
mod deb_assets;

/// Regression (issue 15): the pages had no FILES, ENVIRONMENT or EXIT
/// STATUS section, so `man ordersync` named neither ORDERSYNC_CONFIG, nor
/// /etc/ordersync/config.toml, nor the exit codes.
#[test]
fn every_man_page_has_files_environment_and_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    deb_assets::man_pages(ordersync::cli::Cli::command(), dir.path()).unwrap();
    let mut pages: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    pages.sort();
    let names: Vec<String> = pages
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(names.contains(&"ordersync.1".to_string()), "{names:?}");
    assert!(names.contains(&"ordersync-run.1".to_string()), "{names:?}");
    for page in &pages {
        let text = std::fs::read_to_string(page).unwrap();
        let at = |needle: &str| {
            text.find(needle)
                .unwrap_or_else(|| panic!("{}: no {needle:?}:\n{text}", page.display()))
        };
        let (exit, env, files) = (
            at(".SH \"EXIT STATUS\""),
            at(".SH ENVIRONMENT"),
            at(".SH FILES"),
        );
        // man-pages(7) order, after the options.
        assert!(at(".SH OPTIONS") < exit && exit < env && env < files);
        for needle in [
            "ORDERSYNC_CONFIG",
            "/etc/ordersync/config.toml",
            "./config.toml",
            "CONTRACT.md",
        ] {
            at(needle);
        }
    }
    // The exit codes listed are the ones the binary uses.
    let codes: Vec<&str> = ordersync::cli::MAN_SECTIONS
        .iter()
        .find(|(title, _)| *title == "EXIT STATUS")
        .unwrap()
        .1
        .iter()
        .map(|(code, _)| *code)
        .collect();
    assert_eq!(codes, ["0", "1", "2"]);
}

/// The pages as `deb-assets` writes them: (file name, text).
fn pages() -> Vec<(String, String)> {
    let dir = tempfile::tempdir().unwrap();
    deb_assets::man_pages(ordersync::cli::Cli::command(), dir.path()).unwrap();
    let mut pages: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&path).unwrap())
        })
        .collect();
    pages.sort();
    pages
}

/// Regression (issue 22): the pages did not mention PostgreSQL, `[cluster]`
/// or `url_env` (the variable a URL with a password comes from), and their
/// SYNOPSIS showed `[--config]` without its value.
#[test]
fn every_man_page_names_postgresql_the_pair_and_the_config_value() {
    for (name, text) in pages() {
        for needle in ["PostgreSQL", "[cluster]", "url_env"] {
            assert!(text.contains(needle), "{name}: no {needle:?}:\n{text}");
        }
        let synopsis = text
            .split(".SH SYNOPSIS\n")
            .nth(1)
            .and_then(|rest| rest.split("\n.SH ").next())
            .unwrap_or_else(|| panic!("{name}: no SYNOPSIS:\n{text}"));
        assert!(
            synopsis.contains("[\\fB\\-\\-config\\fR \\fIPATH\\fR]"),
            "{name}: {synopsis}"
        );
    }
}

/// Issue 26 §3: the man pages and completions are in the repository
/// (`contrib/man`, `contrib/completions`: what the package ships and a
/// reader finds), and are what `deb-assets` writes from the CLI and
/// CONTRACT.md now. A change to either without regenerating them fails
/// here.
#[test]
fn the_pages_and_completions_in_the_repository_are_current() {
    let fresh = tempfile::tempdir().unwrap();
    deb_assets::write_all(fresh.path()).unwrap();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib");
    for sub in ["man", "completions"] {
        let names = |dir: &std::path::Path| -> Vec<String> {
            let mut n: Vec<String> = std::fs::read_dir(dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            n.sort();
            n
        };
        let (want, have) = (fresh.path().join(sub), repo.join(sub));
        assert_eq!(
            names(&want),
            names(&have),
            "contrib/{sub} is not what deb-assets writes: run `cargo run --example deb-assets -- contrib` and commit"
        );
        for name in names(&want) {
            let (a, b) = (
                std::fs::read(want.join(&name)).unwrap(),
                std::fs::read(have.join(&name)).unwrap(),
            );
            assert!(
                a == b,
                "contrib/{sub}/{name} is out of date: run `cargo run --example deb-assets -- contrib` and commit"
            );
        }
    }
}

/// The config's page names every key CONTRACT.md section 2 documents
/// (which `config`'s tests keep equal to the keys the config accepts),
/// PostgreSQL's and `[cluster]`'s included.
#[test]
fn the_config_page_names_every_key() {
    let dir = tempfile::tempdir().unwrap();
    deb_assets::config_page(dir.path()).unwrap();
    let page = std::fs::read_to_string(dir.path().join("ordersync.toml.5")).unwrap();
    for section in [
        "[paths]",
        "[inbox]",
        "[inventory]",
        "[store]",
        "[[systems]]",
        "[http]",
        "[cluster]",
        "[[http.tokens]]",
    ] {
        assert!(page.contains(&format!(".SH {section}")), "no {section}");
    }
    for key in [
        "url_env",
        "pool_size",
        "lease",
        "node",
        "batch_size",
        "max_connections",
        "settle",
    ] {
        assert!(
            page.contains(&format!(".TP\n\\fB{}\\fR", key)),
            "no key {key}:\n{page}"
        );
    }
}
