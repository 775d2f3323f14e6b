//! The command line as a newcomer meets it: help on everything, `check`
//! that shows every setting and checks the folders, every config mistake
//! at once, error messages that name the real cause, `status --wait`.

mod common;

use std::fs;
use std::time::Duration;

use clap::CommandFactory;
use common::{Work, acks, order};

fn code(out: &std::process::Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every subcommand and every option or argument says what it is for in
/// `--help` (`status --json`, `inventory --sku`… had none).
#[test]
fn every_command_and_option_has_help_text() {
    fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        if cmd.get_about().is_none() && !path.is_empty() {
            missing.push(format!("{path}: no about"));
        }
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            if arg.get_help().is_none() {
                missing.push(format!("{path} {id}"));
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, &format!("{path} {}", sub.get_name()), missing);
        }
    }
    let mut missing = Vec::new();
    walk(&ordersync::cli::Cli::command(), "", &mut missing);
    assert!(missing.is_empty(), "without help text: {missing:#?}");
}

/// A file where the outbox should be used to pass `check` ("is valid") and
/// make `run` say "File exists (os error 17)" twice. Now `check` checks the
/// folders and names the cause.
#[test]
fn a_file_where_a_folder_belongs_is_named_by_check_and_run() {
    let w = Work::new("[[systems]]\nid = \"erp\"\n[[systems]]\nid = \"wms\"\n");
    fs::write(w.path("outbox"), "").unwrap();
    fs::write(w.path("archive"), "").unwrap();
    let out = w.cmd(&["check"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("is valid"));
    assert!(
        err.contains("paths.outbox: ./outbox is not a folder (it is a file)"),
        "{err}"
    );
    assert!(
        err.contains("paths.archive: ./archive is not a folder (it is a file)"),
        "{err}"
    );

    fs::remove_file(w.path("outbox")).unwrap();
    fs::create_dir(w.path("outbox")).unwrap();
    std::os::unix::fs::symlink("/tmp", w.path("outbox/wms")).unwrap();
    let err = stderr(&w.cmd(&["check"]));
    assert!(
        err.contains("systems \"wms\" outbox: ./outbox/wms is not a folder (it is a symlink)"),
        "{err}"
    );

    fs::remove_dir_all(w.path("inbox")).unwrap();
    fs::write(w.path("inbox"), "").unwrap();
    let out = w.cmd(&["run", "--once"]);
    assert_eq!(code(&out), 1);
    let err = stderr(&out);
    assert!(
        err.contains("the inbox \"./inbox\": is not a folder"),
        "{err}"
    );
    assert!(!err.contains("File exists"), "{err}");
}

/// Several mistakes in one config — bad values and unknown keys — are all
/// reported in one run (it used to stop at the first).
#[test]
fn every_config_mistake_is_reported_in_one_run() {
    // The config is checked, no store opened: as given on every backend.
    let w = Work::as_given(concat!(
        "[inbox]\nmax_file_size = 0\nsetle = \"1s\"\n",
        "[store]\ncache_capacity = \"1KiB\"\n",
        "[[systems]]\nid = \"a/b\"\nbatch_size = 0\n",
        "[[systems]]\nid = \"erp\"\ncsv_delimiter = \"ab\"\nbatchsize = 5\n",
        "[[systems.filter_groups]]\nfilters = [{ key = \"colour\", operator = \"eq\", value = \"x\" }]\n",
    ));
    let out = w.cmd(&["check"]);
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    for key in [
        "8 problems",
        "inbox.setle: unknown key",
        "systems[1].batchsize: unknown key",
        "inbox.max_file_size: must be greater than 0",
        "store.cache_capacity: must be at least 1MiB",
        "systems[0].id: ",
        "systems[0].batch_size: must be at least 1, got 0",
        "systems[1].csv_delimiter: ",
        "systems[1].filter_groups[0].filters[0].key",
    ] {
        assert!(err.contains(key), "{key:?} missing in:\n{err}");
    }
}

/// `check` prints every option of every system, not only a few flags.
#[test]
fn check_prints_every_option_of_every_system() {
    let w = Work::new(concat!(
        "[[systems]]\nid = \"erp\"\nformat = \"csv\"\ncsv_delimiter = \";\"\ncsv_crlf = true\ncsv_bom = true\n",
        "resend_after = \"1h\"\nauto_ack = true\nready_marker = true\ninclude_lines = false\n",
        "[[systems.filter_groups]]\nor = true\n",
        "filters = [{ key = \"channel\", operator = \"in\", value = [\"Shopify\", \"B2B\"], not = true }, { key = \"created_at\", operator = \"gte\", value = \"2026-01-01T00:00:00Z\" }]\n",
        "[[systems]]\nid = \"wms\"\n",
    ));
    let out = w.ok(&["check"]);
    for want in [
        "system erp",
        "format                csv",
        "batch_size            100",
        "include_not_approved  false",
        "include_lines         false",
        "ready_marker          true",
        "resend_after          1h",
        "auto_ack              true",
        "auto_ack_regulate     false",
        "csv_delimiter         \";\"",
        "csv_crlf              true",
        "csv_bom               true",
        "filter_groups[0]      NOT channel in [\"shopify\", \"b2b\"] OR created_at gte 2026-01-01T00:00:00Z",
        "system wms",
        "filter_groups         none: every order",
    ] {
        assert!(out.contains(want), "{want:?} missing in:\n{out}");
    }
}

const SETTLED: &str =
    "[inbox]\nsettle = \"1s\"\n[[systems]]\nid = \"erp\"\n[[systems]]\nid = \"wms\"\n";

/// Without a daemon, `status --wait` does the work (as `run --once`) and
/// then reports it: the README's walk-through shows its outputs.
#[test]
fn status_wait_without_a_daemon_drains_the_inbox_first() {
    let w = Work::new(SETTLED);
    w.drop_file("stock.csv", "sku,in_stock\nA,10\n");
    w.drop_json("o.json", &order("o-1", &[("A", 2)]));
    let v: serde_json::Value =
        serde_json::from_str(&w.ok(&["status", "--wait", "--json"])).unwrap();
    assert_eq!(v["orders"], 1);
    assert_eq!(v["systems"]["erp"]["written"], 1, "{v}");
    assert!(w.inbox().is_empty());
}

/// With the daemon running, `status --wait` waits for it to take the
/// files (settle is 1 s) and write the exports, then reports.
#[test]
fn status_wait_with_the_daemon_waits_for_it() {
    let w = Work::new(SETTLED);
    let _d = w.start(&[]);
    w.drop_json("o.json", &order("o-1", &[("A", 2)]));
    let v: serde_json::Value =
        serde_json::from_str(&w.ok(&["status", "--wait", "--json"])).unwrap();
    assert_eq!(v["systems"]["erp"]["written"], 1, "{v}");
    w.drop_file("ack.csv", acks(&[("o-1", "erp", true)]));
    let out = w.ok(&["status", "--wait"]);
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().eq(["erp", "0", "0", "1"])),
        "{out}"
    );
    assert!(w.inbox().is_empty());
}

/// What cannot finish makes `--wait` give up after `--timeout`, saying
/// what is still waiting (here: a system whose outbox is a file).
#[test]
fn status_wait_gives_up_after_its_timeout_naming_what_waits() {
    let w = Work::new(SETTLED);
    fs::create_dir_all(w.path("outbox")).unwrap();
    fs::write(w.path("outbox/wms"), "").unwrap();
    let _d = w.start(&[]);
    w.drop_json("o.json", &order("o-1", &[("A", 2)]));
    common::wait_for(
        "the daemon to take the file",
        Duration::from_secs(60),
        || w.inbox().is_empty(),
    );
    let out = w.cmd(&["status", "--wait", "--timeout", "2s"]);
    assert_eq!(code(&out), 1);
    let err = stderr(&out);
    assert!(
        err.contains("still busy after 2s: 0 file(s) in the inbox, 1 order(s) pending"),
        "{err}"
    );
    // It said what waits, not why: the docs promise the system whose
    // outbox cannot be written is named.
    let outbox = w.path("outbox/wms");
    assert!(
        err.contains(&format!(
            "; wms: 1 pending, its outbox cannot be written: {} is a file, not a real folder",
            outbox.display()
        )),
        "{err}"
    );
    assert!(!err.contains("erp:"), "{err}");
}

/// `init` where a folder should go but a file is: it says which, and writes
/// nothing (it used to say only "File exists (os error 17)").
#[test]
fn init_names_a_file_in_a_folders_place() {
    let w = Work::new("");
    fs::create_dir_all(w.path("site")).unwrap();
    fs::write(w.path("site/outbox"), "").unwrap();
    let out = w.cmd(&["init", "site"]);
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert!(err.contains("site/outbox is not a folder"), "{err}");
    assert!(!err.contains("File exists"), "{err}");
    assert!(!w.path("site/config.toml").exists());
}

/// Regression (issue 15): `check` accepted an `[http] listen` address that
/// `run` cannot bind (taken, or not an address of this machine). It binds
/// it, releases it, and reports a failure like any other config error.
#[test]
fn check_tries_the_http_address_as_run_would_bind_it() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = held.local_addr().unwrap();
    for (listen, cause) in [
        (taken.to_string(), "Address already in use"),
        // TEST-NET-1 (RFC 5737): never an address of this machine.
        (
            "192.0.2.1:8080".to_string(),
            "Cannot assign requested address",
        ),
    ] {
        let w = Work::new(&format!("[http]\nlisten = \"{listen}\"\n"));
        let out = w.cmd(&["check"]);
        let err = stderr(&out);
        assert_eq!(code(&out), 2, "{listen}: {err}");
        assert!(
            err.contains(&format!("http.listen: cannot listen on {listen}: {cause}")),
            "{listen}: {err}"
        );
        assert!(!String::from_utf8_lossy(&out.stdout).contains("is valid"));
    }
    // A free port passes, and is free again afterwards.
    let free = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let w = Work::new(&format!("[http]\nlisten = \"{free}\"\n"));
    let out = w.ok(&["check"]);
    assert!(
        out.contains(&format!(
            "http: listening on {free} (free: bound and released)"
        )),
        "{out}"
    );
    std::net::TcpListener::bind(free).expect("check released the port");
}

/// `check` on the config of the running daemon: the port is taken by the
/// daemon itself (its control socket answers), which is no error.
#[test]
fn check_accepts_the_port_its_running_daemon_holds() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let w = Work::new(&format!(
        "[inbox]\nsettle = \"0s\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n"
    ));
    let _d = w.start(&[]);
    common::wait_for("the daemon's HTTP port", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let out = w.ok(&["check"]);
    assert!(
        out.contains(&format!(
            "http: listening on 127.0.0.1:{port} (in use, by the running daemon"
        )),
        "{out}"
    );
}

/// Regression (issue 15): `run` printed the OS error of a failed bind twice
/// (`… ([http] listen): Address already in use (os error 98): Address
/// already in use (os error 98)`).
#[test]
fn run_names_a_failed_bind_once() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = held.local_addr().unwrap();
    let w = Work::new(&format!("[http]\nlisten = \"{taken}\"\n"));
    let out = w.cmd(&["run"]);
    let err = stderr(&out);
    assert_eq!(code(&out), 1, "{err}");
    assert!(err.contains(&format!("cannot listen on {taken}")), "{err}");
    assert_eq!(err.matches("Address already in use").count(), 1, "{err}");
}

/// Regression (issue 15): `check` showed the file settings (format,
/// batch_size, csv_*, …) of a `transport = "http"` system, which uses none
/// of them. It shows what applies: no outbox, the transport, its inbox.
#[test]
fn check_shows_an_http_system_only_what_applies_to_it() {
    let w = Work::new(concat!(
        "[[systems]]\nid = \"erp\"\ntransport = \"http\"\n",
        "[[systems]]\nid = \"wms\"\nformat = \"csv\"\n",
    ));
    let out = w.ok(&["check"]);
    let erp = out
        .split("system erp\n")
        .nth(1)
        .and_then(|s| s.split("system wms\n").next())
        .unwrap_or_else(|| panic!("no erp block:\n{out}"));
    let keys: Vec<&str> = erp
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(keys, ["outbox", "transport", "inbox"], "{out}");
    assert!(
        erp.contains("none: its orders are fetched over HTTP"),
        "{out}"
    );
    let wms = out.split("system wms\n").nth(1).unwrap();
    for key in ["format", "batch_size", "csv_delimiter", "filter_groups"] {
        assert!(wms.contains(key), "{key} missing for wms:\n{out}");
    }
}

/// `check` with `[store] backend = "postgres"` shows the server as
/// `postgresql://user@host:port/db` (and the variable it came from), the
/// pool and the statement timeout, and never the password, on stdout or
/// stderr. It connects to nothing: no server listens at the address, and
/// it passes. A bad URL from `url_env` is refused naming the variable,
/// without its value.
#[test]
fn check_shows_the_postgres_server_without_its_password_and_connects_to_none() {
    let config = concat!(
        "[store]\nbackend = \"postgres\"\n",
        "url = \"postgresql://os:s3cret@127.0.0.1:1/orders\"\n",
        "pool_size = 8\nstatement_timeout = \"0s\"\n",
    );
    let w = Work::new(config);
    let out = w.cmd(&["check"]);
    let (stdout, err) = (String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert_eq!(code(&out), 0, "{stdout}{err}");
    for want in [
        "\nstore backend      postgres\n",
        "\nstore url          postgresql://os@127.0.0.1:1/orders\n",
        "\npool size          8\n",
        "\nstatement timeout  none\n",
    ] {
        assert!(stdout.contains(want), "{want:?} missing in:\n{stdout}");
    }
    assert!(!stdout.contains("cache_capacity"), "{stdout}");
    assert!(
        !format!("{stdout}{err}").contains("s3cret"),
        "{stdout}{err}"
    );

    // From an environment variable: named, its value never shown.
    let with_env = |url: &str| {
        fs::write(
            w.path("config.toml"),
            "[store]\nbackend = \"postgres\"\nurl_env = \"ORDERSYNC_TEST_CHECK_DB\"\n",
        )
        .unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_ordersync"))
            .arg("check")
            .current_dir(w.dir.path())
            .env("RUST_LOG", "warn")
            .env_remove("ORDERSYNC_CONFIG")
            .env("ORDERSYNC_TEST_CHECK_DB", url)
            .output()
            .unwrap()
    };
    let out = with_env("postgresql://os:s3cret@127.0.0.1:1/orders");
    let (stdout, err) = (String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert_eq!(code(&out), 0, "{stdout}{err}");
    for want in [
        "\nstore url          postgresql://os@127.0.0.1:1/orders (from $ORDERSYNC_TEST_CHECK_DB)\n",
        "\npool size          4\n",
        "\nstatement timeout  30s\n",
    ] {
        assert!(stdout.contains(want), "{want:?} missing in:\n{stdout}");
    }
    assert!(
        !format!("{stdout}{err}").contains("s3cret"),
        "{stdout}{err}"
    );

    let out = with_env("postgresql://os:s3cret@127.0.0.1:1/orders?sslmode=bogus");
    let (stdout, err) = (String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert_eq!(code(&out), 2, "{stdout}{err}");
    assert!(
        err.contains("store.url_env: the environment variable ORDERSYNC_TEST_CHECK_DB does not hold a PostgreSQL URL or conninfo: invalid value for option `sslmode`"),
        "{err}"
    );
    assert!(
        !format!("{stdout}{err}").contains("s3cret"),
        "{stdout}{err}"
    );

    // sled, the default, keeps its line.
    fs::write(w.path("config.toml"), "").unwrap();
    let out = w.ok(&["check"]);
    assert!(out.contains("\nstore backend  sled\n"), "{out}");
    assert!(
        out.contains("\nstore: cache_capacity 67108864 bytes, compression off"),
        "{out}"
    );
}
