//! Key prefixing, exactly as daprd does it (`state_config.go`): keys are stored as
//! `<prefix>||<key>` according to the component's `keyPrefix` strategy, and un-prefixed
//! in bulk and query responses. Pure code.
//!
//! The stored form cannot be ambiguous: every prefix (an app id, a store name used by
//! `keyPrefix: name`, a custom `keyPrefix`) is restricted to [`ID_CHARS`], which has no
//! `|`, so the prefix of a stored key is exactly what precedes its first `|`, and user keys
//! (which never contain `||`) can never look like a prefixed key. Which prefixes may meet
//! on one physical store is checked by [`crate::config::namespace_problems`].

/// The separator between prefix and key.
pub const SEPARATOR: &str = "||";

/// The `keyPrefix` strategy of one component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPrefix {
    /// `appid` (the default): `<appID>||<key>`, or the bare key when there is no app id.
    AppId,
    /// `name`: `<storeName>||<key>`, so several apps share keys.
    StoreName,
    /// `none`: the bare key.
    None,
    /// Any other value: a fixed, lower-cased prefix.
    Custom(String),
}

impl KeyPrefix {
    /// Parses the component metadata value. The value is lower-cased as Dapr does; a value
    /// containing `||` is rejected, as it makes a Dapr component fail to initialise.
    pub fn parse(raw: Option<&str>) -> Result<KeyPrefix, String> {
        let Some(raw) = raw else {
            return Ok(KeyPrefix::AppId);
        };
        let value = raw.to_lowercase();
        if value.contains(SEPARATOR) {
            return Err(format!("keyPrefix '{raw}' can't contain '{SEPARATOR}'"));
        }
        Ok(match value.as_str() {
            "" | "appid" => KeyPrefix::AppId,
            "name" => KeyPrefix::StoreName,
            "none" => KeyPrefix::None,
            // `namespace` needs a Kubernetes namespace; outside one, daprd falls back to the
            // app id, and so do we.
            "namespace" => KeyPrefix::AppId,
            _ => {
                if let Some(why) = id_problem(&value) {
                    return Err(format!("keyPrefix '{raw}' {why}"));
                }
                KeyPrefix::Custom(value)
            }
        })
    }

    /// The prefix (without separator) for an app and store, or `None` for bare keys.
    pub fn prefix<'a>(&'a self, app_id: &'a str, store: &'a str) -> Option<&'a str> {
        match self {
            KeyPrefix::AppId if app_id.is_empty() => None,
            KeyPrefix::AppId => Some(app_id),
            KeyPrefix::StoreName => Some(store),
            KeyPrefix::None => None,
            KeyPrefix::Custom(p) => Some(p),
        }
    }

    /// The stored form of `key`. The caller has checked that `key` has no `||`.
    ///
    /// ```
    /// use mecha::keys::KeyPrefix;
    ///
    /// let by_app = KeyPrefix::parse(None).unwrap();
    /// assert_eq!(by_app.apply("orders", "statestore", "order-1"), "orders||order-1");
    /// let shared = KeyPrefix::parse(Some("Shared")).unwrap();
    /// assert_eq!(shared.apply("orders", "statestore", "order-1"), "shared||order-1");
    /// assert_eq!(mecha::keys::original_key("orders||order-1"), "order-1");
    /// ```
    pub fn apply(&self, app_id: &str, store: &str, key: &str) -> String {
        match self.prefix(app_id, store) {
            Some(p) => {
                let mut out = String::with_capacity(p.len() + SEPARATOR.len() + key.len());
                out.push_str(p);
                out.push_str(SEPARATOR);
                out.push_str(key);
                out
            }
            None => key.to_owned(),
        }
    }

    /// The start of every key this app sees in the store (`"<prefix>||"`, or empty).
    pub fn scan_prefix(&self, app_id: &str, store: &str) -> String {
        self.prefix(app_id, store)
            .map(|p| format!("{p}{SEPARATOR}"))
            .unwrap_or_default()
    }
}

/// The characters an app id, a custom `keyPrefix` and a store name used as a prefix may
/// hold (none of them is `|`, so a prefix never contains part of the separator).
pub const ID_CHARS: &str = "letters A-Z and a-z, digits 0-9, '.', '_' and '-'";

/// The longest app id (or prefix), in bytes.
pub const MAX_ID_LENGTH: usize = 256;

/// Whether `c` may appear in an app id or a key prefix.
pub fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// What is wrong with `id` as an app id or a key prefix, if anything (the message follows
/// the id, e.g. `app 'orders|' {message}`).
///
/// ```
/// assert!(mecha::keys::id_problem("orders-v2.eu_1").is_none());
/// assert!(mecha::keys::id_problem("orders|").is_some());
/// assert!(mecha::keys::id_problem("").is_some());
/// ```
pub fn id_problem(id: &str) -> Option<String> {
    if id.is_empty() {
        Some("must not be empty".into())
    } else if id.len() > MAX_ID_LENGTH {
        Some(format!("is longer than {MAX_ID_LENGTH} bytes"))
    } else {
        id.chars().find(|c| !is_id_char(*c)).map(|c| {
            format!(
                "contains {c:?}: use only {ID_CHARS} (key prefixes must not be able to hold the separator '{SEPARATOR}')"
            )
        })
    }
}

/// Why a user key is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyProblem {
    /// The key contains `||` (Dapr's rule).
    Separator,
    /// The key contains a NUL byte, which PostgreSQL cannot store; so no store accepts one,
    /// and a key means the same on every store.
    Nul,
}

/// What is wrong with a user key, if anything.
pub fn problem(key: &str) -> Option<KeyProblem> {
    if key.contains('\0') {
        Some(KeyProblem::Nul)
    } else if key.contains(SEPARATOR) {
        Some(KeyProblem::Separator)
    } else {
        None
    }
}

/// Whether a user key is legal (no `||`, no NUL byte).
pub fn is_legal(key: &str) -> bool {
    problem(key).is_none()
}

/// The user's key from a stored key: daprd's `GetOriginalStateKey` (split on `||` into at most
/// three parts and return the second when there is more than one).
pub fn original_key(stored: &str) -> &str {
    let mut parts = stored.splitn(3, SEPARATOR);
    let first = parts.next().unwrap_or_default();
    parts.next().unwrap_or(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategies_match_dapr() {
        let cases: &[(Option<&str>, &str, &str)] = &[
            (None, "app", "app||k"),
            (Some("appid"), "app", "app||k"),
            (Some("AppId"), "app", "app||k"),
            (Some("name"), "app", "store||k"),
            (Some("none"), "app", "k"),
            (Some("Shared"), "app", "shared||k"),
            (None, "", "k"),
        ];
        for (raw, app, want) in cases {
            let p = KeyPrefix::parse(*raw).unwrap();
            assert_eq!(p.apply(app, "store", "k"), *want, "{raw:?}");
        }
        assert!(KeyPrefix::parse(Some("a||b")).is_err());
        assert!(KeyPrefix::parse(Some("orders|")).is_err());
        assert!(KeyPrefix::parse(Some("a b")).is_err());
        assert_eq!(
            KeyPrefix::parse(Some("Team-A.v2")).unwrap(),
            KeyPrefix::Custom("team-a.v2".into())
        );
    }

    #[test]
    fn ids_are_restricted_to_a_separator_free_set() {
        for ok in ["orders", "a", "A-b_c.9", &"x".repeat(MAX_ID_LENGTH)] {
            assert_eq!(id_problem(ok), None, "{ok}");
        }
        for bad in [
            "",
            "orders|",
            "|",
            "a||b",
            "a b",
            "é",
            "a/b",
            "a\0",
            &"x".repeat(MAX_ID_LENGTH + 1),
        ] {
            assert!(id_problem(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn original_key_strips_one_prefix() {
        assert_eq!(original_key("app||k"), "k");
        assert_eq!(original_key("k"), "k");
        assert_eq!(original_key("a||b||c"), "b");
        assert_eq!(original_key("app||"), "");
    }

    #[test]
    fn illegal_keys() {
        assert!(is_legal("a|b"));
        assert!(!is_legal("ke||y"));
        assert!(!is_legal("ke\0y"));
        assert_eq!(problem("a\0||b"), Some(KeyProblem::Nul));
        assert_eq!(problem("a||b"), Some(KeyProblem::Separator));
    }
}
