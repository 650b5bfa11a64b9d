//! What Mecha has seen of a Redis deployment's replication, for `consistency: strong`.
//!
//! A strong write must be on every copy that a later read could be served from, or fail.
//! Mecha reads only from primaries, so a write is strong once the primary has it and every
//! replica of that primary acknowledged it (`WAIT`). The replicas are learned, not
//! configured: `INFO replication` on one node (its `slaveN:` lines), `CLUSTER SLOTS` on a
//! cluster (the replicas of each slot's primary), on every new connection and on every health
//! ping. What was seen is kept: a replica that stops answering is still waited for, so a
//! strong write fails (it is applied on the primary, not replicated) instead of quietly
//! becoming weaker. The count is forgotten only when the store is rebuilt (a reload of its
//! component, or a restart of Mecha); `redisReplicas` overrides it.

use std::collections::{BTreeSet, HashMap};

use parking_lot::RwLock;
use redis::Value;
use redis::cluster_routing::Slot as HashSlot;

/// The replicas seen so far; `None` until the first successful look.
#[derive(Default)]
pub(super) struct Topology {
    seen: RwLock<Option<Seen>>,
}

#[derive(Default)]
struct Seen {
    /// One node: its replicas, as `ip:port`.
    replicas: BTreeSet<String>,
    /// A cluster: the most replicas ever seen behind each slot's primary.
    slots: HashMap<HashSlot, u8>,
}

impl Topology {
    /// The replicas a strong write to `slot` (on one node: `None`) must wait for, or `None`
    /// when the topology has not been read yet.
    pub(super) fn required(&self, slot: Option<HashSlot>) -> Option<u32> {
        let seen = self.seen.read();
        let seen = seen.as_ref()?;
        Some(match slot {
            None => u32::try_from(seen.replicas.len()).unwrap_or(u32::MAX),
            Some(slot) => u32::from(seen.slots.get(&slot).copied().unwrap_or(0)),
        })
    }

    /// Records one node's `INFO replication` answer. `Err` when it is not one.
    pub(super) fn observe_info(&self, info: &str) -> Result<(), String> {
        let replicas = replicas_of_info(info)?;
        let mut seen = self.seen.write();
        seen.get_or_insert_with(Seen::default)
            .replicas
            .extend(replicas);
        Ok(())
    }

    /// Records a `CLUSTER SLOTS` answer. `Err` when it is not one.
    pub(super) fn observe_slots(&self, reply: &Value) -> Result<(), String> {
        let ranges = replicas_of_slots(reply)?;
        let mut seen = self.seen.write();
        let slots = &mut seen.get_or_insert_with(Seen::default).slots;
        for (start, end, replicas) in ranges {
            for n in start..=end {
                if let Some(slot) = HashSlot::new(n) {
                    let count = slots.entry(slot).or_insert(0);
                    *count = (*count).max(replicas);
                }
            }
        }
        Ok(())
    }
}

/// The replicas listed by `INFO replication` (`slave0:ip=10.0.0.2,port=6380,state=online,...`).
pub(super) fn replicas_of_info(info: &str) -> Result<Vec<String>, String> {
    if !info.lines().any(|l| l.starts_with("role:")) {
        return Err("INFO replication has no role line".into());
    }
    Ok(info
        .lines()
        .filter(|l| {
            l.strip_prefix("slave")
                .and_then(|rest| rest.split(':').next())
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter_map(|l| {
            let fields = l.split_once(':')?.1;
            let field = |name: &str| {
                fields
                    .split(',')
                    .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            };
            Some(format!("{}:{}", field("ip")?, field("port")?))
        })
        .collect())
}

/// Per slot range of a `CLUSTER SLOTS` answer: first slot, last slot, replicas of its primary.
pub(super) fn replicas_of_slots(reply: &Value) -> Result<Vec<(u16, u16, u8)>, String> {
    let Value::Array(ranges) = reply else {
        return Err("CLUSTER SLOTS did not answer an array".into());
    };
    ranges
        .iter()
        .map(|range| match range {
            Value::Array(parts) if parts.len() >= 3 => match (&parts[0], &parts[1]) {
                (Value::Int(start), Value::Int(end)) => Ok((
                    u16::try_from(*start).map_err(|e| e.to_string())?,
                    u16::try_from(*end).map_err(|e| e.to_string())?,
                    u8::try_from(parts.len() - 3).unwrap_or(u8::MAX),
                )),
                _ => Err("CLUSTER SLOTS range without its slot numbers".to_owned()),
            },
            _ => Err("CLUSTER SLOTS entry is not a slot range".to_owned()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRIMARY: &str = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\n\
        slave0:ip=127.0.0.1,port=6380,state=online,offset=42,lag=0\r\n\
        slave1:ip=10.0.0.7,port=6381,state=wait_bgsave,offset=0,lag=1\r\n\
        master_failover_state:no-failover\r\nslave_read_only:1\r\n";

    #[test]
    fn info_lists_every_connected_replica_and_nothing_else() {
        assert_eq!(
            replicas_of_info(PRIMARY).unwrap(),
            ["127.0.0.1:6380", "10.0.0.7:6381"]
        );
        let alone = "# Replication\r\nrole:master\r\nconnected_slaves:0\r\n";
        assert!(replicas_of_info(alone).unwrap().is_empty());
        assert!(replicas_of_info("ERR unknown").is_err());
    }

    #[test]
    fn a_replica_once_seen_stays_required() {
        let t = Topology::default();
        assert_eq!(t.required(None), None, "unknown until read");
        t.observe_info("role:master\r\nconnected_slaves:0\r\n")
            .unwrap();
        assert_eq!(t.required(None), Some(0));
        t.observe_info(PRIMARY).unwrap();
        assert_eq!(t.required(None), Some(2));
        // The replicas disconnect: still waited for.
        t.observe_info("role:master\r\nconnected_slaves:0\r\n")
            .unwrap();
        assert_eq!(t.required(None), Some(2));
    }

    #[test]
    fn cluster_slots_count_replicas_per_range() {
        let node = |port: i64| {
            Value::Array(vec![
                Value::BulkString(b"127.0.0.1".to_vec()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let reply = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(8191),
                node(7000),
                node(7003),
            ]),
            Value::Array(vec![Value::Int(8192), Value::Int(16383), node(7001)]),
        ]);
        assert_eq!(
            replicas_of_slots(&reply).unwrap(),
            [(0, 8191, 1), (8192, 16383, 0)]
        );
        let t = Topology::default();
        t.observe_slots(&reply).unwrap();
        let first = HashSlot::new(100).unwrap();
        let last = HashSlot::new(16000).unwrap();
        assert_eq!(t.required(Some(first)), Some(1));
        assert_eq!(t.required(Some(last)), Some(0));
        assert!(replicas_of_slots(&Value::Int(1)).is_err());
    }
}
