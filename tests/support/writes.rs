//! The write mix of the durability tests: a writer's `i`-th request rotates through a single
//! save, a bulk save of three and a transaction of two, with keys unique to the writer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
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

/// What the writers were told succeeded: key → value.
pub type Acked = Arc<Mutex<Vec<(String, Value)>>>;

/// Writer `id`: sends the mix to `store` behind `base` until `stop`, recording every
/// acknowledged item in `acked`. A refusal before `stop` fails the test unless `tolerate`
/// (a store being killed under load), when the writer pauses and goes on; without
/// `tolerate`, a failure after `stop` (the kill) ends the writer.
pub async fn writer(
    id: usize,
    base: String,
    store: &'static str,
    acked: Acked,
    stop: Arc<AtomicBool>,
    tolerate: bool,
) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let MixedWrite { url, body, items } = mixed_write(&base, store, id, i);
        match client.post(url).body(body.to_string()).send().await {
            Ok(r) if r.status() == 204 => acked.lock().extend(items),
            Ok(r) if !tolerate && !stop.load(Ordering::Relaxed) => {
                panic!(
                    "write refused before the kill: {} {}",
                    r.status(),
                    r.text().await.unwrap_or_default()
                )
            }
            _ if tolerate => tokio::time::sleep(Duration::from_millis(20)).await,
            // After the kill (or while it happens) failures are expected and not acknowledged.
            _ => return,
        }
    }
}
