//! Key listing on Redis: `SCAN` with `MATCH` over one key prefix, on the node or on every
//! primary of a cluster, one `SCAN` call per page.
//!
//! The page cursor is Redis's own cursor on a node, and `host:port#cursor` on a cluster
//! (the primaries are visited in address order). `SCAN` returns a key present for the whole
//! listing at least once and may return it twice; callers that need each key once
//! deduplicate. Keys that are not state keys (the version counters, which hold `||` more
//! than once) are left out.

use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};

use super::*;

impl RedisStore {
    /// One page of the state keys starting with `prefix` (state keys, not Redis keys).
    pub(super) async fn scan_page(
        &self,
        prefix: &str,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<KeyPage, StoreError> {
        let pattern = format!("{}*", glob_escape(&self.shared.redis_key(prefix)));
        let count = limit.clamp(1, 10_000);
        let (keys, next) = if self.shared.settings.cluster {
            self.scan_cluster(&pattern, cursor, count).await?
        } else {
            let at = cursor.unwrap_or_else(|| "0".to_owned());
            let (next, keys) = self.scan_once(None, &at, &pattern, count).await?;
            (keys, (next != "0").then_some(next))
        };
        let keys = keys
            .into_iter()
            .map(|k| self.state_key(k))
            .filter(|k| k.starts_with(prefix) && k.matches(keys::SEPARATOR).count() <= 1)
            .collect();
        Ok(KeyPage { keys, next })
    }

    /// The state key stored as Redis key `k` (undoes `clusterKeyPlacement: prefix`).
    fn state_key(&self, k: String) -> String {
        if self.shared.settings.place_by_prefix
            && let Some(rest) = k.strip_prefix('{')
            && let Some((prefix, key)) = rest.split_once("}||")
        {
            return format!("{prefix}||{key}");
        }
        k
    }

    /// One page on a cluster: the current primary's `SCAN`, moving to the next primary when
    /// it is done.
    async fn scan_cluster(
        &self,
        pattern: &str,
        cursor: Option<String>,
        count: usize,
    ) -> Result<(Vec<String>, Option<String>), StoreError> {
        let primaries = self.primaries().await?;
        let (node, at) = match cursor.as_deref().and_then(|c| c.rsplit_once('#')) {
            Some((node, at)) => (node.to_owned(), at.to_owned()),
            None => match primaries.first() {
                Some(first) => (first.clone(), "0".to_owned()),
                None => return Ok((Vec::new(), None)),
            },
        };
        let (next, keys) = self.scan_once(Some(&node), &at, pattern, count).await?;
        let next = if next != "0" {
            Some(format!("{node}#{next}"))
        } else {
            primaries
                .iter()
                .find(|p| p.as_str() > node.as_str())
                .map(|p| format!("{p}#0"))
        };
        Ok((keys, next))
    }

    /// The primaries of the cluster, as `host:port`, sorted.
    async fn primaries(&self) -> Result<Vec<String>, StoreError> {
        let reply: Value = self
            .run(Kind::Read, |mut conn| async move {
                redis::cmd("CLUSTER")
                    .arg("SLOTS")
                    .query_async::<Value>(&mut conn)
                    .await
            })
            .await?;
        primaries_of_slots(&reply).map_err(StoreError::Internal)
    }

    /// `SCAN at MATCH pattern COUNT count`, on `node` (a cluster) or on the one node.
    async fn scan_once(
        &self,
        node: Option<&str>,
        at: &str,
        pattern: &str,
        count: usize,
    ) -> Result<(String, Vec<String>), StoreError> {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(at)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(count);
        let route = match node {
            None => None,
            Some(n) => {
                let bad = || StoreError::InvalidQuery(format!("invalid page cursor {n:?}"));
                let (host, port) = n.rsplit_once(':').ok_or_else(bad)?;
                Some(RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                    host: host.to_owned(),
                    port: port.parse().map_err(|_| bad())?,
                }))
            }
        };
        let reply: Value = self
            .run(Kind::Read, |conn| {
                let (cmd, route) = (cmd.clone(), route.clone());
                async move {
                    match (conn, route) {
                        (Conn::Cluster(mut c), Some(r)) => c.route_command(cmd, r).await,
                        (mut c, _) => cmd.query_async(&mut c).await,
                    }
                }
            })
            .await?;
        scan_reply(reply).map_err(StoreError::Internal)
    }
}

/// `[cursor, [key, ...]]`.
fn scan_reply(reply: Value) -> Result<(String, Vec<String>), String> {
    let text = |v: &Value| match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    let Value::Array(parts) = reply else {
        return Err("SCAN did not answer an array".into());
    };
    match parts.as_slice() {
        [cursor, Value::Array(keys)] => {
            let cursor = text(cursor).ok_or("SCAN answered no cursor")?;
            Ok((cursor, keys.iter().filter_map(text).collect()))
        }
        _ => Err("SCAN answered an unexpected shape".into()),
    }
}

/// The primaries of a `CLUSTER SLOTS` answer, as `host:port`, sorted and unique.
fn primaries_of_slots(reply: &Value) -> Result<Vec<String>, String> {
    let Value::Array(ranges) = reply else {
        return Err("CLUSTER SLOTS did not answer an array".into());
    };
    let mut out = std::collections::BTreeSet::new();
    for range in ranges {
        let Value::Array(parts) = range else {
            return Err("CLUSTER SLOTS entry is not a slot range".into());
        };
        let Some(Value::Array(node)) = parts.get(2) else {
            return Err("CLUSTER SLOTS range without its primary".into());
        };
        match node.as_slice() {
            [Value::BulkString(host), Value::Int(port), ..] => {
                out.insert(format!("{}:{port}", String::from_utf8_lossy(host)));
            }
            _ => return Err("CLUSTER SLOTS primary without host and port".into()),
        }
    }
    Ok(out.into_iter().collect())
}

/// `s` with Redis glob characters escaped, so it matches itself only.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_the_prefix_literally() {
        assert_eq!(glob_escape("app||"), "app||");
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }

    #[test]
    fn scan_and_slot_replies_are_read() {
        let b = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let reply = Value::Array(vec![b("17"), Value::Array(vec![b("a||1"), b("a||2")])]);
        assert_eq!(
            scan_reply(reply).unwrap(),
            ("17".to_owned(), vec!["a||1".to_owned(), "a||2".to_owned()])
        );
        assert!(scan_reply(Value::Int(1)).is_err());
        let range = |start: i64, host: &str, port: i64| {
            Value::Array(vec![
                Value::Int(start),
                Value::Int(start + 1),
                Value::Array(vec![b(host), Value::Int(port), b("id")]),
                Value::Array(vec![b("10.0.0.9"), Value::Int(1), b("id2")]),
            ])
        };
        let slots = Value::Array(vec![
            range(0, "10.0.0.2", 7001),
            range(2, "10.0.0.1", 7000),
            range(4, "10.0.0.2", 7001),
        ]);
        assert_eq!(
            primaries_of_slots(&slots).unwrap(),
            ["10.0.0.1:7000", "10.0.0.2:7001"]
        );
        assert!(primaries_of_slots(&Value::Int(0)).is_err());
    }
}
