//! [`Backend::prefetch`](super::super::backend::Backend::prefetch) on
//! PostgreSQL: the records the rules are about to read, one query per
//! kind (`= ANY($1)` or a join on `unnest`), in the encodings
//! [`Backend::get`](super::super::backend::Backend::get) gives. A key of a
//! kind not read ahead here is left out (read with `get` when needed); a
//! key read ahead and not found is returned as absent.

use std::collections::HashSet;

use uuid::Uuid;

use super::super::backend::Value;
use super::super::keys::{self, Key};
use super::super::records::AppliedFile;
use super::super::{ExportState, encode};
use super::live::{Conn, export_at, order_of};

/// `keys`' records, by kind.
pub(super) fn prefetch(
    conn: &mut Conn,
    keys: &[Key],
) -> Result<Vec<(Key, Option<Value>)>, postgres::Error> {
    let mut orders: Vec<Uuid> = Vec::new();
    let mut externals: Vec<&str> = Vec::new();
    let mut spelt: Vec<Uuid> = Vec::new();
    let (mut ex_system, mut ex_order): (Vec<&str>, Vec<Uuid>) = (Vec::new(), Vec::new());
    let mut skus: HashSet<&str> = HashSet::new();
    let (mut n_order, mut n_system, mut n_sha): (Vec<Uuid>, Vec<&str>, Vec<&[u8]>) =
        (Vec::new(), Vec::new(), Vec::new());
    let (mut f_name, mut f_sha): (Vec<&str>, Vec<&[u8]>) = (Vec::new(), Vec::new());
    let mut counts = false;
    for key in keys {
        match key {
            Key::Order(id) => orders.push(*id),
            Key::External(x) => externals.push(x),
            Key::ExternalUuid(u) => spelt.push(*u),
            Key::Export { system, id } => {
                ex_system.push(system);
                ex_order.push(*id);
            }
            Key::Stock(sku) | Key::Reserved(sku) => {
                skus.insert(sku);
            }
            Key::Note { id, system, sha256 } => {
                n_order.push(*id);
                n_system.push(system);
                n_sha.push(sha256);
            }
            Key::File { name, sha256 } => {
                f_name.push(name);
                f_sha.push(sha256);
            }
            Key::OrderCount | Key::StateCount { .. } => counts = true,
            _ => {}
        }
    }
    let mut out: Vec<(Key, Option<Value>)> = Vec::with_capacity(keys.len());
    let id_value = |id: Uuid| Some(Value::from(&id.as_bytes()[..]));

    if !orders.is_empty() {
        let mut missing: HashSet<Uuid> = orders.iter().copied().collect();
        for r in conn.query(
            "SELECT id, external_id, revision, sent_sha256, regulated, doc FROM orders
               WHERE id = ANY($1)",
            &[&orders],
        )? {
            let rec = order_of(&r);
            missing.remove(&rec.id);
            out.push((keys::order(rec.id), Some(Value::from(rec.encode()))));
        }
        out.extend(missing.into_iter().map(|id| (keys::order(id), None)));
    }
    if !externals.is_empty() {
        let mut missing: HashSet<&str> = externals.iter().copied().collect();
        for r in conn.query(
            "SELECT external_id, id FROM orders WHERE external_id = ANY($1)",
            &[&externals],
        )? {
            let x: String = r.get(0);
            missing.remove(x.as_str());
            out.push((keys::external(&x), id_value(r.get(1))));
        }
        out.extend(missing.into_iter().map(|x| (keys::external(x), None)));
    }
    if !spelt.is_empty() {
        let mut missing: HashSet<Uuid> = spelt.iter().copied().collect();
        for r in conn.query(
            "SELECT external_uuid, id FROM orders WHERE external_uuid = ANY($1)",
            &[&spelt],
        )? {
            let u: Uuid = r.get(0);
            missing.remove(&u);
            out.push((keys::external_uuid(u), id_value(r.get(1))));
        }
        out.extend(missing.into_iter().map(|u| (keys::external_uuid(u), None)));
    }
    if !ex_order.is_empty() {
        let mut missing: HashSet<(String, Uuid)> = ex_system
            .iter()
            .map(|s| s.to_string())
            .zip(ex_order.iter().copied())
            .collect();
        for r in conn.query(
            "SELECT e.system, e.order_id, e.state, e.sort, e.file, e.written_at, e.acked_at, e.revision
               FROM export_states e
               JOIN unnest($1::text[], $2::uuid[]) AS g (system, order_id)
                 ON e.system = g.system AND e.order_id = g.order_id",
            &[&ex_system, &ex_order],
        )? {
            let (system, id): (String, Uuid) = (r.get(0), r.get(1));
            let state: String = r.get(2);
            let key = (system, id);
            missing.remove(&key);
            let (system, id) = key;
            let Some(state) = ExportState::parse(&state) else {
                // Left to `get`, which reports it.
                continue;
            };
            let rec = export_at(&r, 2, state);
            out.push((keys::export(&system, id), Some(Value::from(encode(&rec)))));
        }
        out.extend(
            missing
                .into_iter()
                .map(|(system, id)| (keys::export(&system, id), None)),
        );
    }
    if !skus.is_empty() {
        let list: Vec<&str> = skus.iter().copied().collect();
        let int = |n: Option<i64>| n.map(|n| Value::from(&keys::int(n)));
        for r in conn.query(
            "SELECT sku, in_stock, reserved FROM stock WHERE sku = ANY($1)",
            &[&list],
        )? {
            let sku: String = r.get(0);
            skus.remove(sku.as_str());
            out.push((keys::stock(&sku), int(r.get(1))));
            out.push((keys::reserved(&sku), int(r.get(2))));
        }
        for sku in skus {
            out.push((keys::stock(sku), None));
            out.push((keys::reserved(sku), None));
        }
    }
    if !n_order.is_empty() {
        let mut missing: HashSet<(Uuid, &str, &[u8])> = n_order
            .iter()
            .copied()
            .zip(n_system.iter().copied())
            .zip(n_sha.iter().copied())
            .map(|((a, b), c)| (a, b, c))
            .collect();
        for r in conn.query(
            "SELECT n.order_id, n.system, n.sha256 FROM notes n
               JOIN unnest($1::uuid[], $2::text[], $3::bytea[]) AS g (order_id, system, sha256)
                 ON n.order_id = g.order_id AND n.system = g.system AND n.sha256 = g.sha256",
            &[&n_order, &n_system, &n_sha],
        )? {
            let (id, system, sha): (Uuid, String, Vec<u8>) = (r.get(0), r.get(1), r.get(2));
            missing.retain(|(a, b, c)| !(*a == id && *b == system && *c == sha.as_slice()));
            if let Ok(sha) = <[u8; 32]>::try_from(sha.as_slice()) {
                out.push((
                    Key::Note {
                        id,
                        system,
                        sha256: sha,
                    },
                    Some(Value::default()),
                ));
            }
        }
        for (id, system, sha) in missing {
            if let Ok(sha) = <[u8; 32]>::try_from(sha) {
                out.push((
                    Key::Note {
                        id,
                        system: system.to_string(),
                        sha256: sha,
                    },
                    None,
                ));
            }
        }
    }
    if !f_name.is_empty() {
        // The applied-file checks of a group's files.
        let mut found: HashSet<(String, Vec<u8>)> = HashSet::new();
        for r in conn.query(
            "SELECT a.name, a.sha256, a.at, a.kind FROM applied_files a
               JOIN unnest($1::text[], $2::bytea[]) AS g (name, sha256)
                 ON a.name = g.name AND a.sha256 = g.sha256",
            &[&f_name, &f_sha],
        )? {
            let (name, sha): (String, Vec<u8>) = (r.get(0), r.get(1));
            if let Ok(sha256) = <[u8; 32]>::try_from(sha.as_slice()) {
                let rec = AppliedFile {
                    at: r.get(2),
                    kind: r.get(3),
                };
                let key = Key::File {
                    name: name.clone(),
                    sha256,
                };
                out.push((key, Some(Value::from(encode(&rec)))));
            }
            found.insert((name, sha));
        }
        let missing = f_name
            .iter()
            .zip(&f_sha)
            .filter(|(name, sha)| !found.contains(&(name.to_string(), sha.to_vec())));
        for (name, sha) in missing {
            if let Ok(sha256) = <[u8; 32]>::try_from(*sha) {
                out.push((
                    Key::File {
                        name: name.to_string(),
                        sha256,
                    },
                    None,
                ));
            }
        }
    }
    if counts {
        // Every kept count: a handful of rows.
        let n: i64 = conn
            .query_opt("SELECT n FROM order_count", &[])?
            .map_or(0, |r| r.get(0));
        out.push((keys::order_count(), Some(Value::from(&keys::int(n)))));
        let wanted: HashSet<&Key> = keys
            .iter()
            .filter(|k| matches!(k, Key::StateCount { .. }))
            .collect();
        let mut found: HashSet<Key> = HashSet::new();
        for r in conn.query("SELECT system, state, n FROM state_counts", &[])? {
            let (system, state, n): (String, String, i64) = (r.get(0), r.get(1), r.get(2));
            if let Some(state) = ExportState::parse(&state) {
                let k = keys::count(state, &system);
                found.insert(k.clone());
                out.push((k, Some(Value::from(&keys::int(n)))));
            }
        }
        out.extend(
            wanted
                .into_iter()
                .filter(|k| !found.contains(*k))
                .map(|k| (k.clone(), None)),
        );
    }
    Ok(out)
}
