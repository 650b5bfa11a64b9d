//! Extended metadata (`PUT /v1.0/metadata/{key}`, gRPC `SetMetadata`): one bounded map per
//! app. An app reads and writes only its own attributes; each app is limited in attribute
//! count, name length and total bytes ([`Limits`]), and a write past a limit is refused with
//! `ERR_METADATA_LIMIT`, leaving the attributes as they were. Only authenticated app ids
//! reach here, so the number of maps is bounded by the configuration.

use std::collections::{BTreeMap, HashMap};

use parking_lot::Mutex;

use crate::config::Limits;
use crate::error::{Error, ErrorKind};
use crate::model::AppId;
use crate::model::Operation;

#[derive(Default)]
struct Attributes {
    map: BTreeMap<String, String>,
    /// Sum of name and value lengths.
    bytes: usize,
}

/// Every app's extended metadata.
pub struct ExtendedMetadata {
    max_entries: usize,
    max_key_length: usize,
    max_bytes: usize,
    by_app: Mutex<HashMap<AppId, Attributes>>,
}

impl ExtendedMetadata {
    /// Empty maps bounded by `limits`.
    pub fn new(limits: &Limits) -> ExtendedMetadata {
        ExtendedMetadata {
            max_entries: limits.max_metadata_entries,
            max_key_length: limits.max_metadata_key_length,
            max_bytes: limits.max_metadata_bytes,
            by_app: Mutex::new(HashMap::new()),
        }
    }

    /// The most bytes one attribute value can have (for reading a request body).
    pub fn max_value_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Sets `key` to `value` for `app` (an empty key is ignored, as before).
    pub fn set(&self, app: &AppId, key: &str, value: &str) -> Result<(), Error> {
        if key.is_empty() {
            return Ok(());
        }
        let limit = |msg: String| {
            Err(Error::new(ErrorKind::MetadataLimit, Operation::Other)
                .app(app.as_ref())
                .detail(msg))
        };
        if key.len() > self.max_key_length {
            return limit(format!(
                "the metadata attribute name is {} bytes long, more than the limit of {} bytes",
                key.len(),
                self.max_key_length
            ));
        }
        let mut all = self.by_app.lock();
        let attrs = all.entry(app.clone()).or_default();
        let old = attrs.map.get(key).map(|v| key.len() + v.len());
        if old.is_none() && attrs.map.len() >= self.max_entries {
            return limit(format!(
                "the app already has {} metadata attributes, the limit",
                self.max_entries
            ));
        }
        let bytes = attrs.bytes - old.unwrap_or(0) + key.len() + value.len();
        if bytes > self.max_bytes {
            return limit(format!(
                "the app's metadata attributes would take {bytes} bytes, more than the limit of {} bytes",
                self.max_bytes
            ));
        }
        attrs.map.insert(key.to_owned(), value.to_owned());
        attrs.bytes = bytes;
        Ok(())
    }

    /// `app`'s attributes.
    pub fn get(&self, app: &AppId) -> BTreeMap<String, String> {
        self.by_app
            .lock()
            .get(app)
            .map(|a| a.map.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limited() -> ExtendedMetadata {
        ExtendedMetadata::new(&Limits {
            max_metadata_entries: 2,
            max_metadata_key_length: 4,
            max_metadata_bytes: 12,
            ..Limits::default()
        })
    }

    #[test]
    fn apps_are_separate() {
        let m = limited();
        let (a, b) = (AppId::from("a"), AppId::from("b"));
        m.set(&a, "k", "va").unwrap();
        m.set(&b, "k", "vb").unwrap();
        assert_eq!(m.get(&a)["k"], "va");
        assert_eq!(m.get(&b)["k"], "vb");
        assert!(m.get(&AppId::from("c")).is_empty());
    }

    #[test]
    fn limits_hold_and_a_refused_write_changes_nothing() {
        let m = limited();
        let a = AppId::from("a");
        let code = |r: Result<(), Error>| matches!(r.unwrap_err().kind(), ErrorKind::MetadataLimit);
        assert!(code(m.set(&a, "toolong", "v")));
        m.set(&a, "k1", "v1").unwrap();
        m.set(&a, "k2", "v2").unwrap();
        assert!(code(m.set(&a, "k3", "v")), "a third attribute");
        m.set(&a, "k1", "value1").unwrap(); // replacing: 2+6 + 2+2 = 12 bytes
        assert!(code(m.set(&a, "k1", "value12")), "13 bytes");
        assert_eq!(m.get(&a)["k1"], "value1");
        m.set(&a, "", "ignored").unwrap();
        assert_eq!(m.get(&a).len(), 2);
    }
}
