//! The command line: init, check, exit codes, JSON shapes, reexport.

mod common;

use std::fs;

use common::{TWO_SYSTEMS, Work, acks, order};

fn code(out: &std::process::Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn init_writes_a_working_config_and_refuses_to_overwrite() {
    if common::sled_only("`init` writes the template, on sled, and makes its store in site/state") {
        return;
    }
    let w = Work::new("");
    fs::remove_file(w.path("config.toml")).unwrap();
    w.ok(&["init", "site"]);
    for d in [
        "inbox",
        "outbox/erp",
        "outbox/wms",
        "archive",
        "errors",
        "state",
    ] {
        assert!(w.path(&format!("site/{d}")).is_dir(), "{d}");
    }
    let check = w.ok(&["--config", "site/config.toml", "check"]);
    assert!(
        check.contains("is valid") && check.contains("wms"),
        "{check}"
    );
    let again = w.cmd(&["init", "site"]);
    assert_eq!(code(&again), 2);
    assert!(stderr(&again).contains("already exists"));
}

/// Regression (issue 15): `init` wrote the repository's own `config.toml`
/// (include_str!), so a developer's local edit (an `[http]` token, a port)
/// went into every `ordersync init` and into the package. It writes the
/// template `contrib/config.example.toml` now.
#[test]
fn init_writes_the_template_not_the_repositorys_working_config() {
    if common::sled_only("`init` writes the template, on sled, and makes its store in site/state") {
        return;
    }
    let w = Work::new("");
    fs::remove_file(w.path("config.toml")).unwrap();
    w.ok(&["init", "site"]);
    let written = fs::read_to_string(w.path("site/config.toml")).unwrap();
    assert_eq!(written, include_str!("../contrib/config.example.toml"));
    assert_eq!(written, ordersync::cli::TEMPLATE);
}

/// The repository's `config.toml` (the developer's working config, which
/// the README's first command runs on) and the template agree where the
/// README relies on it: both parse, with the same systems (the worked
/// example uses them). Parsed only: a local `[http] listen` on a taken port
/// does not make this fail.
#[test]
fn the_repositorys_config_and_the_template_have_the_same_systems() {
    use ordersync::config::Config;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let repo = Config::load(&dir.join("config.toml")).unwrap_or_else(|e| panic!("{e}"));
    let template = Config::parse(ordersync::cli::TEMPLATE, &dir.join("config.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let systems = |c: &Config| {
        c.systems
            .iter()
            .map(|s| (s.id.clone(), s.transport.to_string(), s.format.to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(systems(&repo), systems(&template));
    assert_eq!(format!("{:?}", repo.paths), format!("{:?}", template.paths));
}

/// Regression (issue 15): with no config named and none in the current
/// folder, the CLI said `cannot read config config.toml` with no hint. It
/// looks in /etc/ordersync/ too, and a miss names both places and how to
/// choose one (exit 2).
#[test]
fn no_config_found_names_every_place_looked_and_how_to_choose() {
    let w = Work::new("");
    fs::remove_file(w.path("config.toml")).unwrap();
    let out = w.cmd(&["status"]);
    let err = stderr(&out);
    if std::path::Path::new("/etc/ordersync/config.toml").exists() {
        // The package is installed here: that config is the one read.
        assert!(err.contains("/etc/ordersync/config.toml"), "{err}");
        return;
    }
    assert_eq!(code(&out), 2, "{err}");
    let here = w.dir.path().canonicalize().unwrap();
    for needle in [
        format!("./config.toml (in {})", here.display()),
        "/etc/ordersync/config.toml".into(),
        "--config".into(),
        "ORDERSYNC_CONFIG".into(),
    ] {
        assert!(err.contains(&needle), "{needle}: {err}");
    }
    // validate needs no config: it still runs, on the defaults.
    fs::write(w.path("o.json"), include_str!("fixtures/order.json")).unwrap();
    let ok = w.ok(&["validate", "o.json"]);
    assert!(ok.contains("valid"), "{ok}");
}

#[test]
fn config_errors_exit_2_naming_the_key_before_touching_files() {
    for (config, key) in [
        ("[inbox]\nsettle = \"soon\"\n", "settle"),
        ("[inbox]\nsetle = \"1s\"\n", "setle"),
        ("[[systems]]\nid = \"../evil\"\n", "systems[0].id"),
        (
            "[[systems]]\nid = \"a\"\n[[systems]]\nid = \"a\"\n",
            "systems[1].id",
        ),
        ("[[systems]]\nid = \"a\"\nformat = \"xml\"\n", "format"),
        (
            "[[systems]]\nid = \"a\"\n[[systems.filter_groups]]\nfilters = [{ key = \"colour\", operator = \"eq\", value = \"x\" }]\n",
            "systems[0].filter_groups[0].filters[0].key",
        ),
        (
            "[[systems]]\nid = \"a\"\n[[systems.filter_groups]]\nfilters = [{ key = \"channel\", operator = \"bt\", value = [\"a\"] }]\n",
            "filters[0].value",
        ),
    ] {
        let w = Work::new(config);
        for args in [&["check"][..], &["run", "--once"], &["status"]] {
            let out = w.cmd(args);
            assert_eq!(code(&out), 2, "{config} {args:?}: {}", stderr(&out));
            assert!(
                stderr(&out).contains(key),
                "{config}: {key} not in {}",
                stderr(&out)
            );
        }
        assert!(
            !w.path("state").exists(),
            "{config}: touched the state folder"
        );
        assert!(!w.path("outbox").exists(), "{config}: touched the outbox");
    }
}

#[test]
fn usage_errors_exit_2_and_runtime_failures_exit_1() {
    let w = Work::new(TWO_SYSTEMS);
    assert_eq!(code(&w.cmd(&["frobnicate"])), 2);
    assert_eq!(code(&w.cmd(&["orders", "list", "--state", "lost"])), 2);
    assert_eq!(
        code(&w.cmd(&["reexport", "--system", "crm", "--since", "2026-01-01"])),
        2
    );
    assert_eq!(
        code(&w.cmd(&["reexport", "--system", "erp", "--since", "last tuesday"])),
        2
    );
    // A missing store is a runtime failure too; with one, a missing order.
    let no_store = w.cmd(&["orders", "show", "no-such-order"]);
    assert_eq!(code(&no_store), 1);
    assert!(stderr(&no_store).contains("no store in"));
    w.run_once();
    let missing = w.cmd(&["orders", "show", "no-such-order"]);
    assert_eq!(code(&missing), 1);
    assert!(stderr(&missing).contains("no order"));
    let no_config = w.cmd(&["--config", "nope.toml", "check"]);
    assert_eq!(code(&no_config), 2);
}

#[test]
fn config_from_environment_and_relative_paths() {
    let w = Work::new("");
    fs::create_dir_all(w.path("etc")).unwrap();
    fs::write(
        w.path("etc/os.toml"),
        w.config_text(
            "[paths]\ninbox = \"../drop\"\n[inbox]\nsettle = \"0s\"\n[[systems]]\nid = \"erp\"\n",
        ),
    )
    .unwrap();
    fs::create_dir_all(w.path("drop")).unwrap();
    fs::write(
        w.path("drop/o.json"),
        serde_json::to_vec(&order("o-1", &[("A", 1)])).unwrap(),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ordersync"))
        .args(["run", "--once"])
        .current_dir(w.dir.path())
        .env("ORDERSYNC_CONFIG", w.path("etc/os.toml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(common::files_in(&w.path("etc/outbox/erp")).len(), 1);
}

#[test]
fn json_shapes() {
    let w = Work::new(TWO_SYSTEMS);
    w.drop_file("s.csv", "sku,in_stock\nA,5\n");
    w.drop_json("o.json", &order("o-1", &[("A", 2)]));
    w.run_once();
    w.drop_file(
        "ack.csv",
        "order_id,system_id,regulate_inventory,note\no-1,erp,false,got it\n",
    );
    w.run_once();

    let inv = w.json(&["inventory", "--sku", "A"]);
    assert_eq!(
        inv,
        serde_json::json!([{"sku": "A", "in_stock": 5, "reserved": 2, "available": 3}])
    );

    let show = w.json(&["orders", "show", "o-1"]);
    let keys: Vec<&String> = show.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["order", "systems", "timeline"]);
    let erp = &show["systems"]["erp"];
    assert_eq!(erp["state"], "acked");
    assert!(erp["file"].as_str().unwrap().starts_with("orders-"));
    assert!(erp["acked_at"].as_str().unwrap().ends_with('Z'));
    let last = show["timeline"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["event"], "acked");
    assert!(last["detail"].as_str().unwrap().contains("got it"));
    assert!(last["at"].as_str().unwrap().ends_with('Z'));

    let list = w.json(&["orders", "list", "--system", "wms", "--state", "written"]);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["systems"]["wms"], "written");
    assert_eq!(
        w.json(&["orders", "list", "--state", "pending"]),
        serde_json::json!([])
    );

    let text = w.ok(&["status"]);
    assert!(text.contains("orders  1") && text.contains("erp"), "{text}");
}

#[test]
fn reexport_makes_acked_orders_pending_again() {
    let w = Work::new(TWO_SYSTEMS);
    w.drop_json("o1.json", &order("o-1", &[("A", 1)]));
    w.drop_json("o2.json", &order("o-2", &[("A", 1)]));
    w.run_once();
    w.drop_file(
        "ack.csv",
        acks(&[("o-1", "erp", false), ("o-2", "erp", false)]),
    );
    w.run_once();
    let acked_at = w.json(&["orders", "show", "o-1"])["systems"]["erp"]["acked_at"]
        .as_str()
        .unwrap()
        .to_string();
    let out = w.ok(&["reexport", "--system", "erp", "--since", &acked_at]);
    assert!(out.starts_with("2 order(s)"), "{out}");
    assert_eq!(w.state("o-1", "erp").as_deref(), Some("pending"));
    assert_eq!(w.state("o-1", "wms").as_deref(), Some("written"));
    w.run_once();
    assert_eq!(w.exported("erp").len(), 4);
    assert_eq!(w.exported("wms").len(), 2);
    // Nothing acked after a time in the future.
    let out = w.ok(&[
        "reexport",
        "--system",
        "erp",
        "--since",
        "2999-01-01T00:00:00Z",
    ]);
    assert!(out.starts_with("0 order(s)"), "{out}");
}

/// A command started while another process that is not a daemon holds the
/// store (another command, a `run --once`, or one that has just exited and
/// whose lock sled has not released yet) waits for it instead of failing.
#[test]
fn commands_wait_for_another_process_holding_the_store() {
    use std::time::Duration;
    if common::sled_only("sled's lock on its database: one process at a time") {
        return;
    }
    let w = Work::new(TWO_SYSTEMS);
    let config = ordersync::config::Config::load(&w.path("config.toml")).unwrap();
    let held = ordersync::engine::Engine::open(config).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ordersync"))
        .args(["status", "--json"])
        .current_dir(w.dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(child.try_wait().unwrap().is_none(), "it did not wait");
    drop(held);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["orders"], 0);
}

/// `orders list` pages: `--limit` and `--after` (the last id of the previous
/// page) walk the whole listing once, in order, with or without an index.
#[test]
fn orders_list_pages_with_limit_and_after() {
    let w = Work::new(TWO_SYSTEMS);
    for i in 0..7 {
        w.drop_json(
            &format!("o{i}.json"),
            &order(&format!("o-{i}"), &[("A", 1)]),
        );
    }
    w.run_once();
    let ids = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].as_str().unwrap().to_string())
            .collect()
    };
    for filter in [vec![], vec!["--system", "erp", "--state", "written"]] {
        let mut args = vec!["orders", "list"];
        args.extend(&filter);
        let all = ids(&w.json(&args));
        assert_eq!(all.len(), 7, "{filter:?}");
        let mut paged = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut a = args.clone();
            a.extend(["--limit", "3"]);
            if let Some(id) = &after {
                a.extend(["--after", id.as_str()]);
            }
            let page = ids(&w.json(&a));
            assert!(page.len() <= 3);
            if page.is_empty() {
                break;
            }
            after = page.last().cloned();
            paged.extend(page);
        }
        assert_eq!(paged, all, "{filter:?}");
    }
    let text = w.ok(&["orders", "list", "--limit", "2"]);
    assert_eq!(text.lines().count(), 3, "a header and two orders:\n{text}");
}

/// Issue 15 reported that `orders list --state X` without `--system`
/// ignored `--state`. It lists the orders in state X for any configured
/// system, with or without the daemon (which answers over its socket).
#[test]
fn orders_list_state_without_system_means_in_that_state_for_any_system() {
    let w = Work::new(TWO_SYSTEMS);
    w.drop_json("o1.json", &order("o-1", &[("A", 1)]));
    w.drop_json("o2.json", &order("o-2", &[("A", 1)]));
    w.run_once();
    w.drop_file("ack.csv", acks(&[("o-1", "erp", false)]));
    w.run_once();
    let listed = |w: &Work, state: &str| -> Vec<String> {
        let v = w.json(&["orders", "list", "--state", state]);
        let mut ids: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["external_id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    let expect = |w: &Work| {
        assert_eq!(listed(w, "acked"), ["o-1"]);
        // o-1 is still written for wms.
        assert_eq!(listed(w, "written"), ["o-1", "o-2"]);
        assert!(listed(w, "pending").is_empty());
        let text = w.ok(&["orders", "list", "--state", "acked"]);
        assert!(text.contains("o-1") && !text.contains("o-2"), "{text}");
    };
    expect(&w);
    let _d = w.start(&[]);
    expect(&w);
}
