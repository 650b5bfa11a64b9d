//! The query reference set: one corpus and one list of queries with their answers, in
//! order. The answers are PostgreSQL's (its native query runs the same cases), so every
//! store where query is effective, native or emulated, gives what PostgreSQL gives.

use bytes::Bytes;
use mecha::actors::StoreError;
use mecha::capabilities::Capability;
use mecha::model::{Metadata, QueryRequest, QueryResponse, SetRequest, StateOptions};
use serde_json::{Value, json};

use super::harness::Backend;

/// The corpus: nested fields, every JSON type, a JSON scalar and bytes that are not JSON.
fn corpus() -> Vec<(&'static str, Bytes)> {
    let j = |v: Value| Bytes::from(v.to_string());
    vec![
        (
            "u1",
            j(
                json!({"name": "ann", "age": 31, "addr": {"city": "Oslo", "zip": "0150"}, "tags": ["a", "b"], "score": 7.5}),
            ),
        ),
        (
            "u2",
            j(
                json!({"name": "bob", "age": 25, "addr": {"city": "Bergen", "zip": "5003"}, "tags": ["b"], "score": 9}),
            ),
        ),
        (
            "u3",
            j(
                json!({"name": "cid", "age": 31, "addr": {"city": "Oslo", "zip": "0151"}, "score": 7.5}),
            ),
        ),
        (
            "u4",
            j(json!({"name": "dee", "age": "31", "addr": {"city": "Tromsø"}, "score": null})),
        ),
        (
            "u5",
            j(
                json!({"name": "eve", "age": 40, "addr": {"city": "Bergen", "zip": "5004"}, "active": true}),
            ),
        ),
        ("u6", j(json!({"name": "fay", "addr": {"city": "oslo"}}))),
        ("u7", j(json!("plain string"))),
        ("u8", Bytes::from_static(&[0xff, 0x00, 0x9f])),
    ]
}

/// Each query and the keys it answers, in order.
fn reference() -> Vec<(Value, Vec<&'static str>)> {
    let all_by_city_then_age_desc = vec!["u5", "u2", "u1", "u3", "u4", "u6", "u7", "u8"];
    vec![
        (
            json!({}),
            vec!["u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8"],
        ),
        (
            json!({"filter": {"EQ": {"addr.city": "Oslo"}}}),
            vec!["u1", "u3"],
        ),
        (
            json!({"filter": {"NEQ": {"addr.city": "Oslo"}}}),
            vec!["u2", "u4", "u5", "u6"],
        ),
        (
            json!({"filter": {"GT": {"age": 30}}}),
            vec!["u1", "u3", "u5"],
        ),
        (
            json!({"filter": {"GTE": {"age": 31}}}),
            vec!["u1", "u3", "u5"],
        ),
        (json!({"filter": {"LT": {"age": 31}}}), vec!["u2"]),
        (json!({"filter": {"LTE": {"score": 7.5}}}), vec!["u1", "u3"]),
        (
            json!({"filter": {"IN": {"addr.zip": ["0150", "5004", "nope"]}}}),
            vec!["u1", "u5"],
        ),
        (json!({"filter": {"EQ": {"tags.0": "b"}}}), vec!["u2"]),
        (
            json!({"filter": {"AND": [{"EQ": {"addr.city": "Bergen"}}, {"GT": {"age": 30}}]}}),
            vec!["u5"],
        ),
        (
            json!({"filter": {"OR": [{"EQ": {"name": "fay"}}, {"AND": [{"EQ": {"age": 31}}, {"EQ": {"score": 7.5}}]}]}}),
            vec!["u1", "u3", "u6"],
        ),
        (
            json!({"filter": {"EQ": {"addr": {"city": "Tromsø"}}}}),
            vec!["u4"],
        ),
        (json!({"filter": {"EQ": {"score": null}}}), vec!["u4"]),
        (json!({"filter": {"EQ": {"active": true}}}), vec!["u5"]),
        (json!({"filter": {"EQ": {"name": "zed"}}}), vec![]),
        (
            json!({"sort": [{"key": "addr.city"}, {"key": "age", "order": "DESC"}]}),
            all_by_city_then_age_desc,
        ),
        (
            json!({"sort": [{"key": "age", "order": "ASC"}, {"key": "name", "order": "DESC"}]}),
            vec!["u4", "u2", "u3", "u1", "u5", "u6", "u7", "u8"],
        ),
        (
            json!({"filter": {"NEQ": {"name": "zzz"}}, "sort": [{"key": "score", "order": "DESC"}]}),
            vec!["u2", "u1", "u3", "u4", "u5", "u6"],
        ),
    ]
}

async fn run(b: &Backend, q: &Value) -> Result<QueryResponse, StoreError> {
    b.store
        .query(QueryRequest {
            query: q.to_string(),
            metadata: Metadata::new(),
            key_prefix: format!("{}||", b.base),
        })
        .await
}

fn suffixes(b: &Backend, r: &QueryResponse) -> Vec<String> {
    let prefix = format!("{}||", b.base);
    r.results
        .iter()
        .map(|i| i.key.strip_prefix(&prefix).expect("prefixed").to_owned())
        .collect()
}

async fn load(b: &Backend) {
    for (suffix, value) in corpus() {
        let req = SetRequest {
            key: b.key(suffix),
            value,
            etag: None,
            options: StateOptions::default(),
            ttl: None,
            metadata: Metadata::new(),
        };
        b.store.set(req).await.unwrap();
    }
}

/// Every operator, nested fields, several sort keys in both directions and an empty result
/// give PostgreSQL's answer, in PostgreSQL's order, with the stored bytes.
pub async fn query_answers_like_the_reference(b: &Backend) {
    if !b.caps.has(Capability::QueryApi) {
        return;
    }
    load(b).await;
    let stored: Vec<(String, Bytes)> = corpus()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    for (q, want) in reference() {
        let r = run(b, &q).await.unwrap_or_else(|e| panic!("{q}: {e}"));
        assert_eq!(suffixes(b, &r), want, "{q}");
        assert_eq!(r.token, None, "{q}");
        for (item, suffix) in r.results.iter().zip(&want) {
            let data = &stored.iter().find(|(k, _)| k == suffix).unwrap().1;
            assert_eq!(&item.data, data, "{q}: data of {suffix}");
        }
    }
}

/// Pages of `limit` items, followed by their tokens, give the reference order, each item
/// once; the last page has no token, and a token read twice gives the same page.
pub async fn query_pages_like_the_reference(b: &Backend) {
    if !b.caps.has(Capability::QueryApi) {
        return;
    }
    load(b).await;
    let sort = json!([{"key": "addr.city"}, {"key": "age", "order": "DESC"}]);
    let mut pages: Vec<Vec<String>> = Vec::new();
    let mut token: Option<String> = None;
    loop {
        assert!(pages.len() < 10, "paging does not end");
        let mut q = json!({"sort": sort, "page": {"limit": 3}});
        if let Some(t) = &token {
            q["page"]["token"] = json!(t);
        }
        let r = run(b, &q).await.unwrap();
        let again = run(b, &q).await.unwrap();
        assert_eq!(
            suffixes(b, &r),
            suffixes(b, &again),
            "the same token, the same page"
        );
        assert_eq!(r.token, again.token);
        pages.push(suffixes(b, &r));
        token = r.token;
        if token.is_none() {
            break;
        }
    }
    assert_eq!(
        pages,
        [
            vec!["u5", "u2", "u1"],
            vec!["u3", "u4", "u6"],
            vec!["u7", "u8"]
        ]
    );
    let q = json!({"filter": {"EQ": {"addr.city": "Oslo"}}, "page": {"limit": 2}});
    let r = run(b, &q).await.unwrap();
    assert_eq!(suffixes(b, &r), ["u1", "u3"]);
    assert_eq!(
        r.token, None,
        "no token when the matches fill the page exactly"
    );
}

/// A query that would examine more keys than the emulation's limit fails, naming the
/// limit, before returning anything; at the limit it runs. Native query has no such limit.
pub async fn query_over_the_scan_limit_fails(b: &Backend) {
    let Some(limit) = b.query_scan_limit else {
        return;
    };
    let items: Vec<SetRequest> = (0..=limit)
        .map(|i| SetRequest {
            key: b.key(&format!("n{i:05}")),
            value: Bytes::from(json!({"i": i}).to_string()),
            etag: None,
            options: StateOptions::default(),
            ttl: None,
            metadata: Metadata::new(),
        })
        .collect();
    for r in b.store.bulk_set(items).await {
        r.unwrap();
    }
    let q = json!({"filter": {"EQ": {"i": 0}}, "page": {"limit": 1}});
    match run(b, &q).await {
        Err(StoreError::InvalidQuery(m)) => {
            assert!(
                m.contains("limits.maxQueryScan") && m.contains(&limit.to_string()),
                "{m}"
            )
        }
        other => panic!("expected the scan limit, got {other:?}"),
    }
    let del = mecha::model::DeleteRequest {
        key: b.key("n00000"),
        etag: None,
        options: StateOptions::default(),
        metadata: Metadata::new(),
    };
    b.store.delete(del).await.unwrap();
    let q = json!({"filter": {"EQ": {"i": 1}}});
    assert_eq!(suffixes(b, &run(b, &q).await.unwrap()), ["n00001"]);
}
