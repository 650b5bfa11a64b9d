//! Proto ↔ domain conversions, with Dapr's gRPC rules (spec §2.3, §2.4): an absent `Etag`
//! message or `Etag{value:""}` is no ETag, absent or all-UNSPECIFIED options are unspecified,
//! enums map to the stores' strings, values are raw bytes except on SaveState with item
//! metadata `contentType=application/json`. Nothing else.

use bytes::Bytes;

use super::proto::common::{
    Etag, StateItem, StateOptions as ProtoOptions,
    state_options::{StateConcurrency, StateConsistency},
};
use super::proto::runtime::{
    BulkStateItem, GetBulkStateResponse, GetStateResponse, QueryStateItem, QueryStateResponse,
    TransactionalStateOperation,
};
use crate::error::{Error, ErrorKind};
use crate::gateway::ops::BulkItem;
use crate::model::Operation;
use crate::model::{
    CONTENT_TYPE, Concurrency, Consistency, DeleteRequest, Metadata, QueryResponse, SetRequest,
    StateEntry, StateOptions, TransactionOp, TransactionRequest,
};

/// The JSON content type that makes SaveState decode and re-serialize a value.
const JSON_CONTENT_TYPE: &str = "application/json";

/// `StateConsistency` → domain; unknown numbers count as unspecified, as in daprd.
pub fn consistency(raw: i32) -> Consistency {
    match StateConsistency::try_from(raw) {
        Ok(StateConsistency::ConsistencyEventual) => Consistency::Eventual,
        Ok(StateConsistency::ConsistencyStrong) => Consistency::Strong,
        _ => Consistency::Unspecified,
    }
}

/// `StateConcurrency` → domain; unknown numbers count as unspecified, as in daprd.
pub fn concurrency(raw: i32) -> Concurrency {
    match StateConcurrency::try_from(raw) {
        Ok(StateConcurrency::ConcurrencyFirstWrite) => Concurrency::FirstWrite,
        Ok(StateConcurrency::ConcurrencyLastWrite) => Concurrency::LastWrite,
        _ => Concurrency::Unspecified,
    }
}

/// Options: absent, or present with both enums UNSPECIFIED, are the store's defaults.
pub fn options(o: Option<ProtoOptions>) -> StateOptions {
    o.map(|o| StateOptions {
        concurrency: concurrency(o.concurrency),
        consistency: consistency(o.consistency),
    })
    .unwrap_or_default()
}

/// The ETag of a request: only a present, non-empty `Etag` message counts.
pub fn etag(e: Option<Etag>) -> Option<String> {
    e.map(|e| e.value).filter(|v| !v.is_empty())
}

/// A SaveState item. With `json_depth` (SaveState, not transactions) and item metadata
/// `contentType=application/json`, the bytes are JSON-decoded and re-serialized as the HTTP
/// door does (spec §1.11), after the HTTP door's depth check (`json_depth` levels at most,
/// measured before parsing); bytes that are not JSON fail with the decoder's message.
pub fn set_request(
    item: StateItem,
    op: Operation,
    json_depth: Option<usize>,
) -> Result<SetRequest, Error> {
    let value = match json_depth {
        Some(max) if is_json(&item) => {
            crate::gateway::http::body::shape(&item.value, max, op).map_err(|_| {
                Error::new(ErrorKind::LimitExceeded, op)
                    .key(&item.key)
                    .detail(format!(
                        "the JSON value nests deeper than the limit of {max} levels"
                    ))
            })?;
            reserialize_json(&item.value).map_err(|e| {
                Error::new(ErrorKind::ValueNotJson, op)
                    .key(&item.key)
                    .detail(e)
            })?
        }
        _ => Bytes::from(item.value),
    };
    Ok(SetRequest {
        key: item.key,
        value,
        etag: etag(item.etag),
        options: options(item.options),
        ttl: None,
        metadata: item.metadata,
    })
}

/// Whether SaveState decodes this item's value as JSON (`contentType=application/json`).
pub fn is_json(item: &StateItem) -> bool {
    item.metadata.get(CONTENT_TYPE).map(String::as_str) == Some(JSON_CONTENT_TYPE)
}

fn reserialize_json(raw: &[u8]) -> Result<Bytes, String> {
    let v: serde_json::Value = serde_json::from_slice(raw).map_err(|e| e.to_string())?;
    serde_json::to_vec(&v)
        .map(Bytes::from)
        .map_err(|e| e.to_string())
}

/// A DeleteState/DeleteBulkState item (its value is ignored).
pub fn delete_request(
    key: String,
    etag_msg: Option<Etag>,
    opts: Option<ProtoOptions>,
    metadata: Metadata,
) -> DeleteRequest {
    DeleteRequest {
        key,
        etag: etag(etag_msg),
        options: options(opts),
        metadata,
    }
}

/// ExecuteStateTransaction operations: `upsert` or `delete` (case-sensitive), raw values.
pub fn transaction(
    ops: Vec<TransactionalStateOperation>,
    metadata: Metadata,
) -> Result<TransactionRequest, Error> {
    let op = Operation::Transaction;
    let operations = ops
        .into_iter()
        .map(|o| {
            let item = o.request.unwrap_or_default();
            match o.operation_type.as_str() {
                "upsert" => set_request(item, op, None).map(TransactionOp::Upsert),
                "delete" => Ok(TransactionOp::Delete(delete_request(
                    item.key,
                    item.etag,
                    item.options,
                    item.metadata,
                ))),
                other => Err(Error::new(ErrorKind::UnsupportedOperation, op).detail(other)),
            }
        })
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(TransactionRequest {
        operations,
        metadata,
    })
}

/// GetState's answer: a missing key is an empty success.
pub fn get_response(entry: Option<StateEntry>) -> GetStateResponse {
    match entry {
        None => GetStateResponse::default(),
        Some(e) => GetStateResponse {
            data: e.data.to_vec(),
            etag: e.etag.unwrap_or_default(),
            metadata: e.metadata,
        },
    }
}

/// GetBulkState's answer: one item per key, per-key failures in `error`.
pub fn bulk_response(items: Vec<BulkItem>) -> GetBulkStateResponse {
    GetBulkStateResponse {
        items: items
            .into_iter()
            .map(|item| match item.result {
                Ok(Some(e)) => BulkStateItem {
                    key: item.key,
                    data: e.data.to_vec(),
                    etag: e.etag.unwrap_or_default(),
                    error: String::new(),
                    metadata: e.metadata,
                },
                Ok(None) => BulkStateItem {
                    key: item.key,
                    ..BulkStateItem::default()
                },
                Err(error) => BulkStateItem {
                    key: item.key,
                    error,
                    ..BulkStateItem::default()
                },
            })
            .collect(),
    }
}

/// QueryStateAlpha1's answer (no results is an empty response, not an error).
pub fn query_response(resp: QueryResponse) -> QueryStateResponse {
    QueryStateResponse {
        results: resp
            .results
            .into_iter()
            .map(|r| QueryStateItem {
                key: r.key,
                data: r.data.to_vec(),
                etag: r.etag.unwrap_or_default(),
                error: String::new(),
            })
            .collect(),
        token: resp.token.unwrap_or_default(),
        metadata: resp.metadata,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(key: &str, value: &[u8], md: &[(&str, &str)]) -> StateItem {
        StateItem {
            key: key.into(),
            value: value.to_vec(),
            metadata: md
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..StateItem::default()
        }
    }

    #[test]
    fn empty_etag_and_unspecified_options_are_absent() {
        assert_eq!(etag(None), None);
        assert_eq!(
            etag(Some(Etag {
                value: String::new()
            })),
            None
        );
        assert_eq!(etag(Some(Etag { value: "3".into() })), Some("3".into()));
        assert_eq!(options(None), StateOptions::default());
        assert_eq!(
            options(Some(ProtoOptions::default())),
            StateOptions::default()
        );
        assert_eq!(
            options(Some(ProtoOptions {
                concurrency: StateConcurrency::ConcurrencyFirstWrite as i32,
                consistency: StateConsistency::ConsistencyStrong as i32,
            })),
            StateOptions {
                concurrency: Concurrency::FirstWrite,
                consistency: Consistency::Strong,
            }
        );
        assert_eq!(consistency(42), Consistency::Unspecified);
        assert_eq!(concurrency(2), Concurrency::LastWrite);
    }

    #[test]
    fn values_are_raw_unless_save_says_json() {
        let raw = set_request(
            item("k", b"{ \"b\":1, \"a\":2 }", &[]),
            Operation::Save,
            Some(64),
        )
        .unwrap();
        assert_eq!(&raw.value[..], b"{ \"b\":1, \"a\":2 }");
        let json = set_request(
            item(
                "k",
                b"{ \"b\":1, \"a\":2 }",
                &[("contentType", "application/json")],
            ),
            Operation::Save,
            Some(64),
        )
        .unwrap();
        assert_eq!(&json.value[..], br#"{"a":2,"b":1}"#);
        // Transactions pass raw bytes even with the content type.
        let tx = set_request(
            item("k", b"not json", &[("contentType", "application/json")]),
            Operation::Transaction,
            None,
        )
        .unwrap();
        assert_eq!(&tx.value[..], b"not json");
        let err = set_request(
            item("k", b"not json", &[("contentType", "application/json")]),
            Operation::Save,
            Some(64),
        )
        .unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::ValueNotJson);
        // The HTTP door's depth limit, checked before parsing.
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        let json = [("contentType", "application/json")];
        assert!(
            set_request(
                item("k", deep(3).as_bytes(), &json),
                Operation::Save,
                Some(3)
            )
            .is_ok()
        );
        let err = set_request(
            item("k", deep(4).as_bytes(), &json),
            Operation::Save,
            Some(3),
        )
        .unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::LimitExceeded);
        // Raw values are not measured.
        assert!(set_request(item("k", deep(4).as_bytes(), &[]), Operation::Save, Some(3)).is_ok());
    }

    #[test]
    fn unknown_transaction_operation_is_rejected() {
        let ops = vec![TransactionalStateOperation {
            operation_type: "Upsert".into(),
            request: None,
        }];
        let err = transaction(ops, Metadata::new()).unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::UnsupportedOperation);
    }
}
