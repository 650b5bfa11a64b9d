//! Dapr's HTTP JSON bodies → domain requests.
//!
//! daprd decodes with Go's `encoding/json` (and mapstructure for transaction requests), which
//! match field names case-insensitively and ignore unknown fields; so do we. Values are
//! decoded and re-serialized (spec §1.11): `"v"` is stored as the bytes `"v"`, objects come
//! back with sorted keys.

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::error::{Error, ErrorKind};
use crate::model::Operation;
use crate::model::{
    Concurrency, Consistency, DeleteRequest, Metadata, SetRequest, StateOptions, TransactionOp,
    TransactionRequest,
};

/// A field by name: exact match first, then case-insensitive (Go's rule).
fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

fn opt_string(obj: &Map<String, Value>, name: &str) -> Result<Option<String>, String> {
    match field(obj, name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!(
            "field \"{name}\" must be a string, not {}",
            kind(other)
        )),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn metadata(obj: &Map<String, Value>, name: &str) -> Result<Metadata, String> {
    match field(obj, name) {
        None | Some(Value::Null) => Ok(Metadata::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                other => Err(format!(
                    "metadata \"{k}\" must be a string, not {}",
                    kind(other)
                )),
            })
            .collect(),
        Some(other) => Err(format!(
            "field \"{name}\" must be an object, not {}",
            kind(other)
        )),
    }
}

/// Parses `options` (field names case-insensitive, values as Dapr's strings).
fn options(obj: &Map<String, Value>, op: Operation) -> Result<StateOptions, Error> {
    let opts = match field(obj, "options") {
        None | Some(Value::Null) => return Ok(StateOptions::default()),
        Some(Value::Object(o)) => o,
        Some(other) => {
            return Err(Error::malformed(
                op,
                format!("field \"options\" must be an object, not {}", kind(other)),
            ));
        }
    };
    let get = |n| opt_string(opts, n).map_err(|e| Error::malformed(op, e));
    let invalid = |e: String| Error::new(ErrorKind::InvalidOption, op).detail(e);
    Ok(StateOptions {
        concurrency: Concurrency::parse(get("concurrency")?.as_deref().unwrap_or(""))
            .map_err(invalid)?,
        consistency: Consistency::parse(get("consistency")?.as_deref().unwrap_or(""))
            .map_err(invalid)?,
    })
}

fn parse_json(body: &[u8], op: Operation, prefix: &str) -> Result<Value, Error> {
    serde_json::from_slice(body).map_err(|e| Error::malformed(op, format!("{prefix}{e}")))
}

fn merge(into: &mut Metadata, url: &Metadata) {
    for (k, v) in url {
        into.insert(k.clone(), v.clone());
    }
}

/// Re-serializes a JSON value as the bytes to store.
pub fn encode_value(v: Option<&Value>) -> Bytes {
    Bytes::from(serde_json::to_vec(v.unwrap_or(&Value::Null)).unwrap_or_else(|_| b"null".to_vec()))
}

fn set_request(
    obj: &Map<String, Value>,
    op: Operation,
    url: &Metadata,
) -> Result<SetRequest, Error> {
    let m = |e: String| Error::malformed(op, e);
    let key = opt_string(obj, "key").map_err(m)?.unwrap_or_default();
    let mut md = metadata(obj, "metadata").map_err(m)?;
    merge(&mut md, url);
    Ok(SetRequest {
        key,
        value: encode_value(field(obj, "value")),
        etag: opt_string(obj, "etag").map_err(m)?,
        options: options(obj, op)?,
        ttl: None,
        metadata: md,
    })
}

/// `POST /v1.0/state/{store}`: a JSON array of state items. URL metadata wins over item metadata.
pub fn parse_save(body: &[u8], url: &Metadata) -> Result<Vec<SetRequest>, Error> {
    let op = Operation::Save;
    let Value::Array(items) = parse_json(body, op, "")? else {
        return Err(Error::malformed(
            op,
            "the body must be a JSON array of state items",
        ));
    };
    items
        .iter()
        .map(|item| match item {
            Value::Object(obj) => set_request(obj, op, url),
            Value::Null => set_request(&Map::new(), op, url),
            other => Err(Error::malformed(
                op,
                format!("a state item must be an object, not {}", kind(other)),
            )),
        })
        .collect()
}

/// A parsed bulk-get body.
#[derive(Debug, Default)]
pub struct BulkBody {
    /// Keys to read.
    pub keys: Vec<String>,
    /// Requested fan-out.
    pub parallelism: i32,
    /// Metadata (URL metadata merged over it).
    pub metadata: Metadata,
}

/// `POST /v1.0/state/{store}/bulk`.
pub fn parse_bulk(body: &[u8], url: &Metadata) -> Result<BulkBody, Error> {
    const P: &str = "failed deserializing HTTP body: ";
    let op = Operation::BulkGet;
    let m = |e: String| Error::malformed(op, format!("{P}{e}"));
    let Value::Object(obj) = parse_json(body, op, P)? else {
        return Err(m("the body must be a JSON object".into()));
    };
    let keys = match field(&obj, "keys") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|k| {
                k.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| m("every key must be a string".into()))
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(m(format!(
                "field \"keys\" must be an array, not {}",
                kind(other)
            )));
        }
    };
    let parallelism = match field(&obj, "parallelism") {
        None | Some(Value::Null) => 0,
        Some(Value::Number(n)) => n
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .ok_or_else(|| m("field \"parallelism\" must be a 32-bit integer".into()))?,
        Some(other) => {
            return Err(m(format!(
                "field \"parallelism\" must be a number, not {}",
                kind(other)
            )));
        }
    };
    let mut md = metadata(&obj, "metadata").map_err(m)?;
    merge(&mut md, url);
    Ok(BulkBody {
        keys,
        parallelism,
        metadata: md,
    })
}

/// `POST /v1.0/state/{store}/transaction`. URL metadata is copied over the body-level
/// metadata and over each operation's metadata (but body-level metadata is not).
pub fn parse_transaction(body: &[u8], url: &Metadata) -> Result<TransactionRequest, Error> {
    const P: &str = "failed deserializing HTTP body: ";
    let op = Operation::Transaction;
    let m = |e: String| Error::malformed(op, format!("{P}{e}"));
    let Value::Object(obj) = parse_json(body, op, P)? else {
        return Err(m("the body must be a JSON object".into()));
    };
    let raw_ops = match field(&obj, "operations") {
        None | Some(Value::Null) => &Vec::new(),
        Some(Value::Array(a)) => a,
        Some(other) => {
            return Err(m(format!(
                "field \"operations\" must be an array, not {}",
                kind(other)
            )));
        }
    };
    let mut operations = Vec::with_capacity(raw_ops.len());
    for raw in raw_ops {
        let Value::Object(o) = raw else {
            return Err(m("every operation must be an object".into()));
        };
        let kind_name = opt_string(o, "operation").map_err(m)?.unwrap_or_default();
        let empty = Map::new();
        let req = match field(o, "request") {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(r)) => r,
            Some(other) => {
                return Err(m(format!(
                    "field \"request\" must be an object, not {}",
                    kind(other)
                )));
            }
        };
        // `operation` is case-sensitive in daprd.
        operations.push(match kind_name.as_str() {
            "upsert" => TransactionOp::Upsert(
                set_request(req, op, url).map_err(|e| prefix_malformed(e, P))?,
            ),
            "delete" => {
                let mut md = metadata(req, "metadata").map_err(m)?;
                merge(&mut md, url);
                TransactionOp::Delete(DeleteRequest {
                    key: opt_string(req, "key").map_err(m)?.unwrap_or_default(),
                    etag: opt_string(req, "etag").map_err(m)?,
                    options: options(req, op)?,
                    metadata: md,
                })
            }
            other => {
                return Err(Error::new(ErrorKind::UnsupportedOperation, op).detail(other));
            }
        });
    }
    let mut md = metadata(&obj, "metadata").map_err(m)?;
    merge(&mut md, url);
    Ok(TransactionRequest {
        operations,
        metadata: md,
    })
}

fn prefix_malformed(e: Error, prefix: &str) -> Error {
    if *e.kind() == ErrorKind::Malformed {
        let msg = e.wire(crate::model::Protocol::Http).message;
        Error::malformed(e.operation(), format!("{prefix}{msg}"))
    } else {
        e
    }
}

/// The shape of a JSON text, measured without parsing it: how deep it nests and how many
/// elements its arrays hold at the first two levels. Costs one pass and no allocation, so
/// limits are checked before a parser allocates for what it was sent.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Deepest nesting of arrays and objects (a scalar is 0, `[]` is 1).
    pub depth: usize,
    /// Most elements of one array opened at depth 1 (the body itself).
    pub top_items: usize,
    /// Most elements of one array opened at depth 2 (a field of the body, such as `keys`).
    pub field_items: usize,
}

/// Measures `body`; stops with an error once it nests deeper than `max_depth`. Invalid JSON
/// is measured as far as it goes (the parser reports it afterwards).
pub fn shape(body: &[u8], max_depth: usize, op: Operation) -> Result<Shape, Error> {
    // Per open container: whether it is an array, and whether a value started since the
    // last separator (so the next value start counts as a new element).
    let mut stack: Vec<(bool, bool)> = Vec::new();
    let mut counts = [0usize; 3];
    let mut shape = Shape::default();
    let mut in_string = false;
    let mut escaped = false;
    for &b in body {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        if b.is_ascii_whitespace() {
            continue;
        }
        let depth = stack.len();
        if matches!(b, b']' | b'}') {
            if let Some((is_array, _)) = stack.pop()
                && is_array
                && (1..=2).contains(&depth)
            {
                let slot = if depth == 1 {
                    &mut shape.top_items
                } else {
                    &mut shape.field_items
                };
                *slot = (*slot).max(counts[depth]);
            }
            continue;
        }
        if let Some((is_array, started)) = stack.last_mut() {
            if b == b',' {
                *started = false;
                continue;
            }
            if *is_array && !*started && b != b':' {
                *started = true;
                if depth <= 2 {
                    counts[depth] += 1;
                }
            }
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                if depth + 1 > max_depth {
                    return Err(Error::new(ErrorKind::LimitExceeded, op).detail(format!(
                        "the JSON body nests deeper than the limit of {max_depth} levels"
                    )));
                }
                if depth < 2 {
                    counts[depth + 1] = 0;
                }
                stack.push((b == b'[', false));
                shape.depth = shape.depth.max(depth + 1);
            }
            _ => {}
        }
    }
    Ok(shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_counts_items_and_depth_without_parsing() {
        let op = Operation::Save;
        let s = shape(
            br#"[{"key":"a","value":[1,2,3,[4]]},{},null, "x,[y]" ]"#,
            10,
            op,
        )
        .unwrap();
        assert_eq!((s.depth, s.top_items), (4, 4));
        let s = shape(br#"{"keys":["a","b\"]","c"],"metadata":{"k":"v"}}"#, 10, op).unwrap();
        assert_eq!((s.depth, s.top_items, s.field_items), (2, 0, 3));
        let s = shape(
            br#"{"operations":[{"request":{"value":[1,2,3,4,5]}},{}]}"#,
            10,
            op,
        )
        .unwrap();
        assert_eq!(s.field_items, 2);
        assert_eq!(shape(b"[]", 10, op).unwrap().top_items, 0);
        assert_eq!(shape(b"[[],[]]", 10, op).unwrap().top_items, 2);
        let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
        let e = shape(deep.as_bytes(), 64, op).unwrap_err();
        assert_eq!(*e.kind(), ErrorKind::LimitExceeded);
        assert!(shape(deep.as_bytes(), 65, op).is_ok());
    }
    use crate::model::Protocol;

    fn msg(e: Error) -> (u16, String) {
        let w = e.wire(Protocol::Http);
        (w.http_status, w.message)
    }

    #[test]
    fn save_items_decode_like_go() {
        let url = Metadata::from([("ttlInSeconds".to_owned(), "9".to_owned())]);
        let items = parse_save(
            br#"[{"key":"a","value":{"b":1,"a":[true,null]},"etag":"3","metadata":{"ttlInSeconds":"1","x":"y"},"options":{"Concurrency":"first-write"}},{"KEY":"b","vae":"x"},{"key":"c","value":"v","etag":null,"metadata":null,"options":{}}]"#,
            &url,
        )
        .unwrap();
        assert_eq!(&items[0].value[..], br#"{"a":[true,null],"b":1}"#);
        assert_eq!(items[0].etag.as_deref(), Some("3"));
        assert_eq!(items[0].metadata["ttlInSeconds"], "9", "URL metadata wins");
        assert_eq!(items[0].metadata["x"], "y");
        assert_eq!(items[0].options.concurrency, Concurrency::FirstWrite);
        assert_eq!(items[1].key, "b");
        assert_eq!(&items[1].value[..], b"null");
        assert_eq!(&items[2].value[..], br#""v""#);
    }

    #[test]
    fn save_rejects_bad_shapes() {
        let none = Metadata::new();
        for body in [
            &b""[..],
            b"{}",
            b"foobar",
            b"[1,]",
            br#"[{"key":"k","etag":5}]"#,
            br#"[{"key":7}]"#,
            br#"[{"key":"k","metadata":{"a":1}}]"#,
            b"[3]",
        ] {
            let (status, _) = msg(parse_save(body, &none).unwrap_err());
            assert_eq!(status, 400, "{}", String::from_utf8_lossy(body));
        }
        let (status, m) = msg(parse_save(
            br#"[{"key":"k","options":{"consistency":"linear"}}]"#,
            &none,
        )
        .unwrap_err());
        assert_eq!(status, 400);
        assert!(m.contains("unrecognized consistency model 'linear'"), "{m}");
    }

    #[test]
    fn bulk_body() {
        let b = parse_bulk(
            br#"{"keys":["a","b"],"parallelism":3,"metadata":{"m":"1"}}"#,
            &Metadata::new(),
        )
        .unwrap();
        assert_eq!(
            (b.keys.len(), b.parallelism, b.metadata["m"].as_str()),
            (2, 3, "1")
        );
        assert!(parse_bulk(b"{}", &Metadata::new()).unwrap().keys.is_empty());
        let (s, m) = msg(parse_bulk(b"", &Metadata::new()).unwrap_err());
        assert_eq!(s, 400);
        assert!(m.starts_with("failed deserializing HTTP body: "));
        assert!(parse_bulk(br#"{"keys":[1]}"#, &Metadata::new()).is_err());
    }

    #[test]
    fn transaction_body() {
        let url = Metadata::from([("u".to_owned(), "1".to_owned())]);
        let t = parse_transaction(
            br#"{"operations":[{"operation":"upsert","request":{"Key":"k1","value":{"a":1},"etag":"3","metadata":{"ttlInSeconds":"60"}}},{"operation":"delete","request":{"key":"k2"}}],"metadata":{"partitionKey":"p1"}}"#,
            &url,
        )
        .unwrap();
        assert_eq!(t.operations.len(), 2);
        assert_eq!(t.metadata["partitionKey"], "p1");
        assert_eq!(t.metadata["u"], "1");
        match &t.operations[0] {
            TransactionOp::Upsert(r) => {
                assert_eq!((r.key.as_str(), r.metadata["u"].as_str()), ("k1", "1"));
                assert!(!r.metadata.contains_key("partitionKey"));
            }
            TransactionOp::Delete(_) => panic!("expected upsert"),
        }
        let null_md =
            parse_transaction(br#"{"operations":[],"metadata":null}"#, &Metadata::new()).unwrap();
        assert!(null_md.operations.is_empty());
        let e = parse_transaction(
            br#"{"operations":[{"operation":"Upsert","request":{"key":"k"}}]}"#,
            &Metadata::new(),
        )
        .unwrap_err();
        assert_eq!(msg(e), (400, "operation type Upsert not supported".into()));
        let e = parse_transaction(
            br#"{"operations":[{"operation":"upsert","request":{"key":"k","etag":1}}]}"#,
            &Metadata::new(),
        )
        .unwrap_err();
        assert_eq!(msg(e).0, 400);
    }
}
