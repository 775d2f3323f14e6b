//! Unknown keys, as the config reports them: a key's path named as the
//! other messages name keys (`systems[1].batchsize`), and the key of the
//! same table it was most likely meant to be. A suggestion is always a key
//! that exists: the list is the raw structs' own field names, never a copy.

use serde::Deserialize;

use super::cluster::RawCluster;
use super::http::{RawHttp, RawToken};
use super::inbox::RawInbox;
use super::paths::RawPaths;
use super::remotes::{RawPull, RawPush, RawRemote};
use super::store::RawStore;
use super::systems::RawSystem;
use super::{RawConfig, RawInventory};
use crate::filter::RawFilterGroup;

/// A key's path as the other messages name keys: `systems[1].batch`.
pub(super) fn key_path(p: &serde_ignored::Path) -> String {
    use serde_ignored::Path as P;
    match p {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", key_path(parent)),
        P::Map { parent, key } => match key_path(parent) {
            head if head.is_empty() => key.clone(),
            head => format!("{head}.{key}"),
        },
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            key_path(parent)
        }
    }
}

/// The key of the table `unknown` is in (`systems[1].batchsize`) closest
/// to it, when one is close enough to be the key meant (a typo, not another
/// word): about a third of its letters differ at most.
pub(super) fn did_you_mean(unknown: &str) -> Option<&'static str> {
    // The table's path with the indexes left out: `systems[].filter_groups[]`.
    let (table, key) = unknown.rsplit_once('.').unwrap_or(("", unknown));
    let mut shape = String::new();
    let mut in_index = false;
    for c in table.chars() {
        match c {
            '[' => {
                in_index = true;
                shape.push_str("[]");
            }
            ']' => in_index = false,
            c if !in_index => shape.push(c),
            _ => {}
        }
    }
    let keys = match shape.as_str() {
        "" => fields::<RawConfig>(),
        "paths" => fields::<RawPaths>(),
        "inbox" => fields::<RawInbox>(),
        "inventory" => fields::<RawInventory>(),
        "store" => fields::<RawStore>(),
        "systems[]" => fields::<RawSystem>(),
        "systems[].filter_groups[]" => fields::<RawFilterGroup>(),
        "systems[].filter_groups[].filters[]" => fields::<crate::filter::RawFilter>(),
        "http" => fields::<RawHttp>(),
        "http.tokens[]" => fields::<RawToken>(),
        "cluster" => fields::<RawCluster>(),
        "remotes[]" => fields::<RawRemote>(),
        "remotes[].pull[]" => fields::<RawPull>(),
        "remotes[].push[]" => fields::<RawPush>(),
        _ => &[],
    };
    keys.iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, _)| *d > 0 && *d <= (key.chars().count() + 1).max(3) / 3)
        .min()
        .map(|(_, k)| k)
}

/// Levenshtein's distance between `a` and `b`: the fewest letters to
/// insert, delete or replace to turn one into the other.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb))
                .min(above + 1)
                .min(row[j] + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

/// The field names `T` reads (its serde derive's own list): the keys its
/// table may hold, so a suggestion never names a key that does not exist.
fn fields<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    /// A deserializer that answers nothing: a struct's `Deserialize` hands
    /// it the struct's field names, which it keeps.
    struct Fields<'a>(&'a mut &'static [&'static str]);

    impl<'de> serde::Deserializer<'de> for Fields<'_> {
        type Error = serde::de::value::Error;

        fn deserialize_any<V: serde::de::Visitor<'de>>(
            self,
            _: V,
        ) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("only a struct's fields are read"))
        }

        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            self.deserialize_any(visitor)
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }

    let mut found: &'static [&'static str] = &[];
    let _ = T::deserialize(Fields(&mut found));
    found
}
