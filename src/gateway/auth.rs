//! API tokens: daprd's single `DAPR_API_TOKEN`, per-app tokens (literal, from the
//! environment, or from a file that is re-read when it changes), and the `/metrics` token.
//!
//! A presented token is hashed (SHA-256) and compared with every candidate's hash in
//! constant time (`subtle`), without stopping at a match, so neither the position of a
//! match nor the length of a common prefix shows in the time a lookup takes. Tokens are
//! never logged.

use std::time::SystemTime;

use parking_lot::RwLock;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

use crate::config::TokenSource;
use crate::model::AppId;

type Hash = [u8; 32];

fn hash(token: &str) -> Hash {
    let mut out = [0u8; 32];
    out.copy_from_slice(&Sha256::digest(token.as_bytes()));
    out
}

/// What a file's token was read from: its modification time and length.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(source: &TokenSource) -> Stamp {
    match source {
        TokenSource::Value(_) => None,
        TokenSource::File(p) => std::fs::metadata(p)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len()))),
    }
}

struct Loaded {
    /// `None` until a token could be read; never matches then.
    hash: Option<Hash>,
    stamp: Stamp,
}

struct Entry {
    app: AppId,
    source: TokenSource,
    loaded: RwLock<Loaded>,
}

/// A set of tokens, each naming an app.
pub struct Tokens {
    entries: Vec<Entry>,
}

impl Tokens {
    /// Reads every source once (a file that cannot be read matches nothing until it can).
    pub fn new(sources: impl IntoIterator<Item = (AppId, TokenSource)>) -> Tokens {
        let entries = sources
            .into_iter()
            .map(|(app, source)| {
                let loaded = Loaded {
                    hash: source.read().ok().map(|t| hash(&t)),
                    stamp: stamp(&source),
                };
                Entry {
                    app,
                    source,
                    loaded: RwLock::new(loaded),
                }
            })
            .collect();
        Tokens { entries }
    }

    /// Whether there is no token at all (then nobody needs one).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether any token comes from a file (and so needs [`Tokens::reload`]).
    pub fn has_files(&self) -> bool {
        self.entries
            .iter()
            .any(|e| matches!(e.source, TokenSource::File(_)))
    }

    /// The app whose token `presented` is, checking every candidate in constant time.
    pub fn find(&self, presented: &str) -> Option<AppId> {
        let h = hash(presented);
        let mut hit = 0u32; // index + 1 of the match, 0 for none
        for (i, e) in self.entries.iter().enumerate() {
            let loaded = e.loaded.read();
            let (valid, candidate) = match &loaded.hash {
                Some(c) => (Choice::from(1), *c),
                None => (Choice::from(0), [0u8; 32]),
            };
            let index = u32::try_from(i + 1).unwrap_or(u32::MAX);
            // The first match wins (configured apps come before DAPR_API_TOKEN).
            let first = hit.ct_eq(&0);
            hit.conditional_assign(&index, valid & first & candidate.ct_eq(&h));
        }
        (hit as usize)
            .checked_sub(1)
            .map(|i| self.entries[i].app.clone())
    }

    /// Re-reads every token file whose modification time or length changed. A file that
    /// cannot be read (or is empty) keeps the previous token, with a warning.
    pub fn reload(&self) {
        for e in &self.entries {
            let TokenSource::File(path) = &e.source else {
                continue;
            };
            let now = stamp(&e.source);
            if now == e.loaded.read().stamp {
                continue;
            }
            match e.source.read() {
                Ok(t) => {
                    *e.loaded.write() = Loaded {
                        hash: Some(hash(&t)),
                        stamp: now,
                    };
                    tracing::info!(app = %e.app, file = %path.display(), "api token file re-read");
                }
                Err(why) => {
                    e.loaded.write().stamp = now;
                    tracing::warn!(app = %e.app, error = %why, "api token file unreadable; keeping the previous token");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(s: &str) -> AppId {
        AppId::from(s)
    }

    #[test]
    fn finds_the_right_app_among_several() {
        let t = Tokens::new([
            (app("a"), TokenSource::Value("ta".into())),
            (app("b"), TokenSource::Value("tb".into())),
            (app("c"), TokenSource::Value("tc".into())),
        ]);
        assert_eq!(t.find("tb").as_deref(), Some("b"));
        assert_eq!(t.find("tc").as_deref(), Some("c"));
        assert_eq!(t.find("ta").as_deref(), Some("a"));
        assert_eq!(t.find("t"), None);
        assert_eq!(t.find("tbb"), None);
        assert_eq!(t.find(""), None);
        assert!(!t.has_files());
        let dup = Tokens::new([
            (app("a"), TokenSource::Value("same".into())),
            (app("default"), TokenSource::Value("same".into())),
        ]);
        assert_eq!(
            dup.find("same").as_deref(),
            Some("a"),
            "the first match wins"
        );
    }

    #[test]
    fn a_token_file_is_re_read_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first\n").unwrap();
        let t = Tokens::new([(app("a"), TokenSource::File(path.clone()))]);
        assert!(t.has_files());
        assert_eq!(t.find("first").as_deref(), Some("a"));
        // A different length is a change even within the file system's time resolution.
        std::fs::write(&path, "second-token").unwrap();
        t.reload();
        assert_eq!(t.find("first"), None);
        assert_eq!(t.find("second-token").as_deref(), Some("a"));
        // An empty file keeps the previous token.
        std::fs::write(&path, "").unwrap();
        t.reload();
        assert_eq!(t.find("second-token").as_deref(), Some("a"));
    }
}
