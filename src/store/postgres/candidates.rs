//! The candidates of `GET /v10/orders/export` on PostgreSQL: one query per
//! page of [`super::live`]'s `PAGE` rows, keyset-paged by (created, id),
//! that narrows them with the indexes of `migrations/0003_http.sql` and
//! reads, with each, the fields the request decides on, so that a page of
//! candidates is one round trip, not one per order.
//!
//! - **Which orders.** A system's `pending` orders, by their listing
//!   (whose sort key is `created`), merged with its `written` ones and,
//!   with `not_exported_since`, those acked at or after it, by `created`:
//!   what sled's merge of its listings gives ([`super::super::http`]).
//! - **Narrowed, never decided.** The [`Narrowing`] becomes conditions on
//!   the typed columns of `orders`, which the writer fills from the
//!   document (`external_id` is the record's, which restore checks is the
//!   document's): an order the request accepts meets them all. A text
//!   condition is on `ordersync_fold(column)`: the value lower-cased when
//!   it is all ASCII (where Rust's `to_lowercase` and an ASCII lower case
//!   agree, whatever the database's locale and encoding), NULL otherwise,
//!   and a NULL always passes: only Rust lower-cases other text.
//! - **The decision's fields are the document's.** They are read from
//!   `doc` (`jsonb_to_record`), not from the typed columns, and only for
//!   the page's rows; `crate::http::export` decides every candidate on
//!   them with `crate::filter`.

use std::ops::Bound;

use postgres::types::ToSql;
use postgres::{Client, Row};
use serde_json::{Map, Value as Json};
use uuid::Uuid;

use super::super::StoreError;
use super::super::candidates::{Candidate, Cond, FILTER_KEYS, Narrowing, Test, TimeKey};

type Param = Box<dyn ToSql + Sync + Send>;

/// The query of one request, built once, run once per page.
pub struct Query {
    /// The first page's SQL, and the next pages' (after a cursor).
    first: String,
    next: String,
    /// The parameters both take first; then the page's size and, for
    /// `next`, the cursor (created, id).
    params: Vec<Param>,
}

/// A query's parameters as they are numbered (`$1`, `$2`, …).
#[derive(Default)]
struct Params(Vec<Param>);

impl Params {
    fn add(&mut self, value: impl ToSql + Sync + Send + 'static) -> String {
        self.0.push(Box::new(value));
        format!("${}", self.0.len())
    }
}

/// The text columns filters read, by the document's key.
fn text_column(key: &str) -> Option<&'static str> {
    Some(match key {
        "channel" => "o.channel",
        "type" => "o.\"type\"",
        "currency" => "o.currency",
        "status" => "o.status",
        "internal_status" => "o.internal_status",
        "reference" => "o.reference",
        "external_id" => "o.external_id",
        _ => return None,
    })
}

impl Query {
    pub fn new(system: &str, acked_since: Option<i64>, narrow: &Narrowing) -> Query {
        let mut p = Params::default();
        let system = p.add(system.to_string());
        let others = match acked_since {
            None => "e.state = 'written'".to_string(),
            Some(since) => format!(
                "(e.state = 'written' OR (e.state = 'acked' AND e.sort >= {}))",
                p.add(since)
            ),
        };
        let mut narrowing = String::new();
        for c in conditions(narrow, &mut p) {
            narrowing.push_str("\n   AND ");
            narrowing.push_str(&c);
        }
        let n = p.0.len();
        let limit = format!("${}", n + 1);
        let sql = |cursor: Option<(String, String)>| {
            let (pending_after, others_after) = match &cursor {
                None => (String::new(), String::new()),
                Some((c, id)) => (
                    format!("\n   AND (e.sort, e.order_id) > ({c}, {id})"),
                    format!("\n   AND (o.created, o.id) > ({c}, {id})"),
                ),
            };
            let fields = FILTER_KEYS
                .iter()
                .map(|k| format!("\"{k}\" jsonb"))
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "SELECT c.created, c.id, f.* FROM (
  (SELECT e.sort AS created, e.order_id AS id
     FROM export_states e JOIN orders o ON o.id = e.order_id
    WHERE e.system = {system} AND e.state = 'pending'{narrowing}{pending_after}
    ORDER BY e.sort, e.order_id LIMIT {limit})
  UNION ALL
  (SELECT o.created, o.id
     FROM export_states e JOIN orders o ON o.id = e.order_id
    WHERE e.system = {system} AND {others}{narrowing}{others_after}
    ORDER BY o.created, o.id LIMIT {limit})
  ORDER BY created, id LIMIT {limit}
) c
JOIN orders o ON o.id = c.id
CROSS JOIN LATERAL jsonb_to_record(o.doc) AS f({fields})
ORDER BY c.created, c.id"
            )
        };
        Query {
            first: sql(None),
            next: sql(Some((format!("${}", n + 2), format!("${}", n + 3)))),
            params: p.0,
        }
    }

    /// A page of at most `limit` rows, after `after` (created, id).
    pub fn fetch(
        &self,
        client: &mut Client,
        after: Option<&(i64, Uuid)>,
        limit: i64,
    ) -> Result<Vec<Row>, postgres::Error> {
        let mut params: Vec<&(dyn ToSql + Sync)> = self
            .params
            .iter()
            .map(|p| &**p as &(dyn ToSql + Sync))
            .collect();
        params.push(&limit);
        match after {
            None => client.query(&self.first, &params),
            Some((created, id)) => {
                params.push(created);
                params.push(id);
                client.query(&self.next, &params)
            }
        }
    }
}

/// A row of [`Query`] as a candidate, with its cursor.
pub fn candidate(row: &Row) -> Result<(Option<(i64, Uuid)>, Candidate), StoreError> {
    let created: i64 = row.get(0);
    let id: Uuid = row.get(1);
    let mut fields = Map::new();
    for (i, key) in FILTER_KEYS.iter().enumerate() {
        // SQL NULL: the key is missing, or JSON null.
        let v: Option<Json> = row.get(i + 2);
        fields.insert(key.to_string(), v.unwrap_or(Json::Null));
    }
    Ok((
        Some((created, id)),
        Candidate {
            created,
            id,
            fields: Some(Json::Object(fields)),
        },
    ))
}

/// The narrowing as SQL conditions on `o` (orders), all of which hold.
fn conditions(narrow: &Narrowing, p: &mut Params) -> Vec<String> {
    let mut out = Vec::new();
    if narrow.approved {
        // Facts::approved: the document's internal_status is exactly
        // "approved" (text equality is byte equality).
        out.push("o.internal_status = 'approved'".to_string());
    }
    for clause in &narrow.clauses {
        let any: Vec<String> = clause.iter().map(|c| condition(c, p)).collect();
        out.push(if any.len() == 1 {
            any.into_iter().next().unwrap_or_default()
        } else {
            format!("({})", any.join(" OR "))
        });
    }
    out
}

fn condition(c: &Cond, p: &mut Params) -> String {
    match c {
        Cond::Time(key, test) => {
            let column = match key {
                TimeKey::Created => "o.created",
                TimeKey::Updated => "o.updated",
            };
            match test {
                Test::In(values) => format!("{column} = ANY({}::bigint[])", p.add(values.clone())),
                Test::Range(low, high) => range(column, low, high, p),
            }
        }
        Cond::Text(key, test) => {
            let Some(column) = text_column(key) else {
                return "TRUE".into();
            };
            let folded = format!("ordersync_fold({column})");
            // Compared in "C" (byte order, as Rust compares strings), which
            // is also the indexes' collation.
            let value = format!("{folded} COLLATE \"C\"");
            let test = match test {
                Test::In(values) => format!("{value} = ANY({}::text[])", p.add(values.clone())),
                Test::Range(low, high) => range(&value, low, high, p),
            };
            format!("({test} OR {folded} IS NULL)")
        }
    }
}

fn range<T: ToSql + Sync + Send + Clone + PartialEq + 'static>(
    value: &str,
    low: &Bound<T>,
    high: &Bound<T>,
    p: &mut Params,
) -> String {
    if let (Bound::Included(a), Bound::Included(b)) = (low, high)
        && a == b
    {
        return format!("{value} = {}", p.add(a.clone()));
    }
    let mut parts = Vec::new();
    match low {
        Bound::Included(v) => parts.push(format!("{value} >= {}", p.add(v.clone()))),
        Bound::Excluded(v) => parts.push(format!("{value} > {}", p.add(v.clone()))),
        Bound::Unbounded => {}
    }
    match high {
        Bound::Included(v) => parts.push(format!("{value} <= {}", p.add(v.clone()))),
        Bound::Excluded(v) => parts.push(format!("{value} < {}", p.add(v.clone()))),
        Bound::Unbounded => {}
    }
    if parts.is_empty() {
        "TRUE".into()
    } else {
        parts.join(" AND ")
    }
}
