//! `ordersync check`: validate the config, print what it resolves to.

use super::{CliError, table};
use crate::config::Config;

pub fn run(c: &Config) -> Result<(), CliError> {
    println!("config {} is valid", c.file.display());
    let p = &c.paths;
    print!(
        "{}",
        table(&[
            vec!["inbox".into(), p.inbox.display().to_string()],
            vec!["outbox".into(), p.outbox.display().to_string()],
            vec!["archive".into(), p.archive.display().to_string()],
            vec!["errors".into(), p.errors.display().to_string()],
            vec!["state".into(), p.state.display().to_string()],
        ])
    );
    let i = &c.inbox;
    println!(
        "inbox: settle {}, rescan {}, {}, max_file_size {} bytes, encoding {}, ready_marker {}",
        humantime::format_duration(i.settle),
        i.rescan
            .map_or("never".into(), |d| humantime::format_duration(d)
                .to_string()),
        if i.poll { "polling" } else { "OS events" },
        i.max_file_size,
        i.encoding,
        i.ready_marker.as_deref().unwrap_or("none"),
    );
    println!("ignore: {}", i.ignore_patterns.join(" "));
    println!("inventory: allow_negative {}", c.inventory.allow_negative);
    println!("store: cache_capacity {} bytes", c.store.cache_capacity);
    let mut rows = vec![vec![
        "system".to_string(),
        "format".into(),
        "batch".into(),
        "outbox".into(),
        "options".into(),
    ]];
    for s in &c.systems {
        let mut opts = vec![format!("transport {}", s.transport)];
        for (on, name) in [
            (s.include_not_approved, "include_not_approved"),
            (s.include_cancelled, "include_cancelled"),
            (s.include_archived, "include_archived"),
            (!s.include_lines, "no lines"),
            (s.ready_marker, "ready_marker"),
            (s.auto_ack, "auto_ack"),
            (s.auto_ack_regulate, "auto_ack_regulate"),
        ] {
            if on {
                opts.push(name.to_string());
            }
        }
        if let Some(d) = s.resend_after {
            opts.push(format!("resend_after {}", humantime::format_duration(d)));
        }
        if !s.filter_groups.is_empty() {
            opts.push(format!("{} filter group(s)", s.filter_groups.len()));
        }
        rows.push(vec![
            s.id.clone(),
            s.format.to_string(),
            s.batch_size.to_string(),
            p.outbox.join(&s.id).display().to_string(),
            opts.join(", "),
        ]);
    }
    if c.systems.is_empty() {
        println!("no systems configured: orders are stored but never exported");
    } else {
        print!("{}", table(&rows));
    }
    match c.http.listen {
        None => println!("http: off (set [http] listen to serve the HTTP API)"),
        Some(addr) => println!("http: listening on {addr}"),
    }
    for t in &c.http.tokens {
        let scope = t.systems.as_ref().map_or("*".into(), |s| s.join(", "));
        println!("http token {:?}: systems {scope}", t.name);
    }
    Ok(())
}
