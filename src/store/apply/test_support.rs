//! What the rules' unit tests share: an order file's input, and a store
//! in a temporary folder with one system, `erp`.

use super::{Applied, ApplyError, Context};
use crate::config::Config;
use crate::input::Input;
use crate::order;
use crate::problem::Problem;
use crate::store::Store;
use crate::store::backend::Value;
use crate::store::keys::{self, Key};

pub(super) fn order_input(lines: &[(&str, i64)]) -> Input<'static> {
    order_input_updated(lines, None)
}

pub(super) fn order_input_updated(lines: &[(&str, i64)], updated: Option<i64>) -> Input<'static> {
    let items: Vec<serde_json::Value> = lines
        .iter()
        .map(|(sku, qty)| serde_json::json!({"sku": sku, "qty_ordered": qty}))
        .collect();
    let mut v = serde_json::json!({
        "external_id": "o-1", "type": "Sales Order", "currency": "EUR", "reference": "r",
        "line_items": items,
        "billing_address": {"address1": "a", "city": "c", "country": "DE"},
        "shipping_address": {"address1": "a", "city": "c", "country": "DE"},
        "shipping_rule": {"name": "n", "recovery": 1},
        "tax_rule": {"name": "n", "inclusive": true, "rate": 0.1},
    });
    if let Some(at) = updated {
        v["updated"] = at.into();
    }
    let mut problems = Vec::new();
    let o = order::validate(&v, "$", 1, &mut problems).expect("valid order");
    Input::Orders(vec![("$".into(), o)])
}

pub(super) struct Fixture {
    _dir: tempfile::TempDir,
    pub(super) store: Store,
    pub(super) config: Config,
}

impl Fixture {
    pub(super) fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::parse(
            "[[systems]]\nid = \"erp\"\n",
            &dir.path().join("config.toml"),
        )
        .unwrap();
        let store = Store::open(&dir.path().join("state"), &config.store).unwrap();
        Fixture {
            _dir: dir,
            store,
            config,
        }
    }

    pub(super) fn apply(&self, name: &str, input: &Input) -> Result<Applied, ApplyError> {
        let ctx = Context {
            now: 5,
            systems: &self.config.systems,
            allow_negative: true,
            only_system: None,
        };
        let group = self.store.group();
        let r = self.store.apply(&group, name, &[0; 32], input, &[], &ctx);
        group.commit().unwrap();
        r
    }

    pub(super) fn set(&self, key: Key, value: i64) {
        self.put(key, &keys::int(value));
    }

    /// Writes one record as it is, past the rules.
    pub(super) fn put(&self, key: Key, value: impl Into<Value>) {
        let _writer = self.store.db.lock();
        self.store
            .db
            .commit([(key, Some(value.into()))].into())
            .unwrap();
    }

    /// The problems of a rejected file, checking that it changed nothing.
    pub(super) fn rejected(&self, name: &str, input: &Input) -> Vec<String> {
        let before = self.store.dump().unwrap();
        let r = self.apply(name, input);
        assert_eq!(self.store.dump().unwrap(), before);
        match r {
            Err(ApplyError::Rejected(p)) => p.iter().map(Problem::to_string).collect(),
            other => panic!("not rejected: {other:?}"),
        }
    }
}
