//! A record's value as the store's rules and every backend see it: bytes
//! in the record's own encoding (see `keys.rs`), cheap to clone.
//!
//! Inside it is sled's buffer (`sled::IVec`: short values inline, longer
//! ones shared), because sled hands its reads out in that form and they
//! are then passed on without a copy; nothing outside the sled backend
//! knows. A backend makes one from bytes (`From<Vec<u8>>`, `From<&[u8]>`)
//! and reads it as `&[u8]` (`Deref`).

use std::fmt;
use std::ops::Deref;

/// A record's value (see the module's head).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Value(sled::IVec);

impl Value {
    /// sled's own form, for a write to sled (no copy).
    pub(in crate::store) fn into_sled(self) -> sled::IVec {
        self.0
    }

    /// A value read from sled (no copy).
    pub(in crate::store) fn from_sled(v: sled::IVec) -> Value {
        Value(v)
    }
}

impl Deref for Value {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for Value {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Value {
        Value(v.into())
    }
}

impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Value {
        Value(v.into())
    }
}

impl<const N: usize> From<&[u8; N]> for Value {
    fn from(v: &[u8; N]) -> Value {
        Value(v[..].into())
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}
