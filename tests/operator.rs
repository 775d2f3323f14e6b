//! What a new operator tripped over (issue 22): a command piped into
//! `head`, a config typo, the shipped config switched to PostgreSQL, a
//! URL of the wrong kind, what `restore`, `dump` and `run` print.

mod common;

use std::process::{Command, Output, Stdio};

use common::{TWO_SYSTEMS, Work, order};

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The binary in `w`'s folder with the environment an operator has: no
/// `RUST_LOG`, so each command logs at its own default level.
fn bare(w: &Work, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ordersync"));
    cmd.args(args)
        .current_dir(w.dir.path())
        .env_remove("RUST_LOG")
        .env_remove("JOURNAL_STREAM")
        .env_remove("ORDERSYNC_CONFIG");
    cmd
}

/// Runs `args` with stdout a pipe whose reading end is already closed, as
/// `ordersync … | head -1` is once `head` has its line: every write gets
/// EPIPE.
fn into_closed_pipe(w: &Work, args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let out = bare(w, args)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run ordersync");
    let err = stderr(&out);
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe") && err.is_empty(),
        "{args:?} said on stderr:\n{err}"
    );
    out
}

/// Regression: `ordersync check | head -1` panicked (exit 101, a
/// backtrace: Rust ignores SIGPIPE, so `println!` panics on EPIPE), and
/// `dump`, `orders list`, `status` failed with `Broken pipe (os error 32)`.
/// Now every command stops quietly, exit 0, with or without a daemon.
#[test]
fn a_closed_stdout_ends_every_command_quietly() {
    let w = Work::new(TWO_SYSTEMS);
    for i in 0..3 {
        w.drop_json(
            &format!("o{i}.json"),
            &order(&format!("E-{i}"), &[("A", 1)]),
        );
    }
    w.run_once();
    std::fs::write(
        w.path("check.json"),
        serde_json::to_vec(&order("V-1", &[("A", 1)])).unwrap(),
    )
    .unwrap();
    let commands: &[&[&str]] = &[
        &["check"],
        &["status"],
        &["status", "--json"],
        &["orders", "list"],
        &["orders", "list", "--json"],
        &["inventory"],
        &["dump"],
        &["validate", "check.json"],
        &["--help"],
    ];
    for args in commands {
        let out = into_closed_pipe(&w, args);
        assert_eq!(code(&out), 0, "{args:?}: {}", out.status);
    }
    // Through the running daemon: the CLI copies its answer to stdout.
    let mut daemon = w.start(&[]);
    for args in &commands[1..7] {
        let out = into_closed_pipe(&w, args);
        assert_eq!(code(&out), 0, "{args:?} with the daemon: {}", out.status);
    }
    // The daemon lost a reader, nothing else: it still answers.
    assert_eq!(w.json(&["status"])["orders"], 3);
    assert!(daemon.terminate().success(), "{}", daemon.log_text());
}

/// Regression: a misspelt key said only `unknown key`; now the key of
/// that table it most likely meant is named, when one is close enough.
#[test]
fn a_config_typo_names_the_key_meant() {
    // Only the config is read: as given on every backend.
    let w = Work::as_given(concat!(
        "setle = 1\n",
        "[inbox]\nsetle = \"1s\"\nwibble = 1\n",
        "[store]\ncache_capcity = \"64MiB\"\n",
        "[http]\nlisen = \"127.0.0.1:0\"\n",
        "[[systems]]\nid = \"erp\"\nbatchsize = 5\n",
        "[[systems.filter_groups]]\n",
        "filters = [{ key = \"channel\", operator = \"eq\", value = \"x\", nott = true }]\n",
        "[clustr]\nnode = \"a\"\n",
    ));
    let out = w.cmd(&["check"]);
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    for want in [
        "\n  inbox.setle: unknown key; did you mean \"settle\"?\n",
        "\n  store.cache_capcity: unknown key; did you mean \"cache_capacity\"?\n",
        "\n  http.lisen: unknown key; did you mean \"listen\"?\n",
        "\n  systems[0].batchsize: unknown key; did you mean \"batch_size\"?\n",
        "\n  systems[0].filter_groups[0].filters[0].nott: unknown key; did you mean \"not\"?\n",
        "\n  clustr: unknown key; did you mean \"cluster\"?\n",
        // A key of another table is no suggestion, nor is a far one.
        "\n  setle: unknown key\n",
        "\n  inbox.wibble: unknown key\n",
    ] {
        assert!(err.contains(want), "{want:?} missing in:\n{err}");
    }
}

/// The shipped configs (`init`'s and the Debian package's) with their
/// folders moved into `w` (the package's are absolute).
fn shipped_configs() -> [(&'static str, String); 2] {
    let deb = include_str!("../contrib/deb/config.toml")
        .replace("/var/spool/ordersync/", "")
        .replace("/var/lib/ordersync", "state");
    [
        ("init's", ordersync::cli::TEMPLATE.to_string()),
        ("the package's", deb),
    ]
}

/// Regression: DEPLOY said to set `[store] backend = "postgres"` and a
/// URL, and every shipped config then failed `check`: they set sled's
/// `cache_capacity` and `compression`, which PostgreSQL refuses. Now they
/// leave them commented out, and a config that still sets them is told
/// exactly what to change.
#[test]
fn a_shipped_config_switched_to_postgres_is_valid() {
    const SWITCH: &str = "[store]\nbackend = \"postgres\"\nurl = \"postgresql://ordersync@/ordersync?host=/run/postgresql\"\n";
    for (which, text) in shipped_configs() {
        assert_eq!(text.matches("\n[store]\n").count(), 1, "{which}");
        // As DEPLOY says: backend and url under [store]; nothing connects.
        let w = Work::as_given(&text.replace("\n[store]\n", &format!("\n{SWITCH}")));
        let out = w.cmd(&["check"]);
        assert_eq!(code(&out), 0, "{which}: {}", stderr(&out));
        let shown = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(shown.contains("postgres"), "{which}: {shown}");
    }
    // An older config (the package's conffile keeps it) that sets them.
    let w = Work::as_given(&format!(
        "{SWITCH}cache_capacity = \"64MiB\"\ncompression = false\n"
    ));
    let out = w.cmd(&["check"]);
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    for key in ["cache_capacity", "compression"] {
        let want = format!(
            "store.{key}: only applies to backend = \"sled\": delete the line (or comment it out) to keep the state on PostgreSQL"
        );
        assert!(err.contains(&want), "{want:?} missing in:\n{err}");
    }
}

/// Regression: `url = "http://…"` was refused with postgres's `unexpected
/// EOF`; a unix socket's URL was shown as `postgresql://u@/run/postgresql:5433/db`.
#[test]
fn a_url_of_another_kind_and_a_socket_url_are_shown_plainly() {
    let w = Work::as_given(
        "[store]\nbackend = \"postgres\"\nurl = \"http://db.example.com/ordersync\"\n",
    );
    let out = w.cmd(&["check"]);
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert!(
        err.contains("store.url: not a PostgreSQL URL or conninfo: it starts with http:// but a PostgreSQL URL starts with postgresql://"),
        "{err}"
    );
    assert!(!err.contains("EOF"), "{err}");
    for url in [
        "postgresql://ordersync@/ordersync?host=/run/postgresql&port=5433",
        "host=/run/postgresql port=5433 user=ordersync dbname=ordersync",
    ] {
        let w = Work::as_given(&format!(
            "[store]\nbackend = \"postgres\"\nurl = \"{url}\"\n"
        ));
        let shown = w.ok(&["check"]);
        assert!(
            shown.contains("postgresql://ordersync@/ordersync?host=/run/postgresql&port=5433\n"),
            "{url}: {shown}"
        );
    }
}

/// Regression: `restore` into PostgreSQL said `restored … into ./state`
/// (a folder it did not touch), and with the daemon running it spoke of
/// "the state folder". Now both name the store as configured.
#[test]
fn restore_names_the_store_it_loads_into() {
    let from = Work::new(TWO_SYSTEMS);
    from.drop_json("o.json", &order("E-1", &[("A", 1)]));
    from.run_once();
    from.ok(&["dump", "--output", "state.ndjson"]);
    let dump = from.path("state.ndjson");
    let dump = dump.to_str().unwrap();

    let into = Work::new(TWO_SYSTEMS);
    let store = match into.store_url() {
        None => "sled in ./state".to_string(),
        Some(_) => "PostgreSQL at postgresql://".to_string(),
    };
    let said = into.ok(&["restore", dump]);
    assert!(
        said.starts_with("restored ") && said.contains(&format!(" into {store}")),
        "{said}"
    );
    assert_eq!(into.json(&["status"])["orders"], 1);

    let mut daemon = into.start(&[]);
    let out = into.cmd(&["restore", dump]);
    assert_eq!(code(&out), 1);
    let err = stderr(&out);
    assert!(
        err.contains(&format!("the daemon is running on this store ({store}"))
            && err.contains("into a new, empty store"),
        "{err}"
    );
    assert!(!err.contains("state folder"), "{err}");
    assert!(daemon.terminate().success(), "{}", daemon.log_text());
}

/// Regression: `dump` printed an INFO line on stderr besides the dump (and
/// `dump --output` besides its one line); `run`'s first line did not say
/// which store it uses.
#[test]
fn dump_prints_only_its_result_and_run_names_its_store() {
    let w = Work::new(TWO_SYSTEMS);
    let out = bare(&w, &["run", "--once"]).output().expect("run");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let log = stderr(&out);
    let store = match w.store_url() {
        None => "store=sled in ./state".to_string(),
        Some(_) => "store=PostgreSQL at postgresql://".to_string(),
    };
    let first = log.lines().next().unwrap_or_default();
    assert!(
        first.contains("ordersync starting") && first.contains(&store),
        "{log}"
    );

    let out = bare(&w, &["dump"]).output().expect("dump");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    assert!(out.stdout.starts_with(b"{"));
    let out = bare(&w, &["dump", "--output", "d.ndjson"])
        .output()
        .expect("dump");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.starts_with("dumped ") && err.lines().count() == 1,
        "{err}"
    );
}
