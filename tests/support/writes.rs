//! The write mix of the durability tests: a writer's `i`-th request rotates through a single
//! save, a bulk save of three and a transaction of two, with keys unique to the writer.

use serde_json::{Value, json};

/// One request of the mix: its URL, its body, and the items it writes when acknowledged.
pub struct MixedWrite {
    /// Where it is POSTed.
    pub url: String,
    /// The JSON body.
    pub body: Value,
    /// Key → value of every item the request writes.
    pub items: Vec<(String, Value)>,
}

/// The `i`-th write of writer `id` on `store` behind `base` (`http://host:port`).
pub fn mixed_write(base: &str, store: &str, id: usize, i: usize) -> MixedWrite {
    match i % 3 {
        0 => {
            let k = format!("w{id}-s{i}");
            let v = json!({"writer": id, "i": i});
            MixedWrite {
                url: format!("{base}/v1.0/state/{store}"),
                body: json!([{"key": k, "value": v}]),
                items: vec![(k, v)],
            }
        }
        1 => {
            let items: Vec<(String, Value)> = (0..3)
                .map(|j| (format!("w{id}-b{i}-{j}"), json!(i * 10 + j)))
                .collect();
            let body = items
                .iter()
                .map(|(k, v)| json!({"key": k, "value": v}))
                .collect();
            MixedWrite {
                url: format!("{base}/v1.0/state/{store}"),
                body: Value::Array(body),
                items,
            }
        }
        _ => {
            let items: Vec<(String, Value)> = (0..2)
                .map(|j| (format!("w{id}-t{i}-{j}"), json!(format!("t{i}.{j}"))))
                .collect();
            let ops: Vec<Value> = items
                .iter()
                .map(|(k, v)| json!({"operation": "upsert", "request": {"key": k, "value": v}}))
                .collect();
            MixedWrite {
                url: format!("{base}/v1.0/state/{store}/transaction"),
                body: json!({"operations": ops}),
                items,
            }
        }
    }
}
