//! The write mix of the durability tests: a writer's `i`-th request rotates through a single
//! save, a bulk save of three and a transaction of two, with keys unique to the writer; and
//! the durability check itself: writers, SIGKILL of Mecha, every acknowledged write read back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{Value, json};

use super::binary::Process;

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

/// Eight writers on `store` of `mecha` for 1.5 s, then SIGKILL of Mecha while requests are in
/// flight: what it acknowledged (more than 50 writes, or the test fails).
pub async fn acknowledged_before_sigkill(
    mecha: &mut Process,
    store: &'static str,
) -> Vec<(String, Value)> {
    let acked: Acked = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..8)
        .map(|id| {
            tokio::spawn(writer(
                id,
                mecha.base(),
                store,
                acked.clone(),
                stop.clone(),
                false,
            ))
        })
        .collect();
    // Let the stream run, then kill without warning while requests are in flight.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    mecha.kill();
    for w in writers {
        w.await.expect("writer");
    }
    let acked = std::mem::take(&mut *acked.lock());
    assert!(
        acked.len() > 50,
        "only {} writes were acknowledged before the kill",
        acked.len()
    );
    eprintln!("{} acknowledged writes before SIGKILL", acked.len());
    acked
}

/// Every acknowledged write reads back from `store` behind `base` with its acknowledged value.
pub async fn assert_all_present(base: &str, store: &str, acked: &[(String, Value)]) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for chunk in acked.chunks(200) {
        let keys: Vec<&str> = chunk.iter().map(|(k, _)| k.as_str()).collect();
        let r = client
            .post(format!("{base}/v1.0/state/{store}/bulk"))
            .body(json!({"keys": keys}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let items: Vec<Value> = r.json().await.unwrap();
        assert_eq!(items.len(), chunk.len());
        for ((key, want), got) in chunk.iter().zip(&items) {
            assert_eq!(got["key"], json!(key));
            assert_eq!(
                &got["data"], want,
                "acknowledged write {key} lost or changed"
            );
        }
    }
}
