//! Step 3 (lint): every request-level metadata map is linted against the store's declared
//! keys and matrix, and the findings judged under the app's lint mode.

use crate::capabilities::lint::{self, Finding, LintMode, LintOp, LintTarget, Location, Severity};
use crate::capabilities::portability::MetaKeys;
use crate::error::{Error, ErrorKind};
use crate::gateway::actor::StateRequest;
use crate::gateway::{Catalog, StoreInfo};
use crate::metrics;
use crate::model::{AppId, Metadata, Operation, TransactionOp};

/// The metadata buckets a request carries, at any level (request, item, transaction).
pub(super) fn meta_keys(request: &StateRequest) -> MetaKeys {
    let mut keys = MetaKeys::default();
    match request {
        StateRequest::Get { metadata, .. }
        | StateRequest::BulkGet { metadata, .. }
        | StateRequest::Query { metadata, .. } => keys.add_all(metadata),
        StateRequest::Save { items } => items.iter().for_each(|r| keys.add_all(&r.metadata)),
        StateRequest::Delete { items } => items.iter().for_each(|r| keys.add_all(&r.metadata)),
        StateRequest::Transaction(t) => {
            keys.add_all(&t.metadata);
            for o in &t.operations {
                match o {
                    TransactionOp::Upsert(r) => keys.add_all(&r.metadata),
                    TransactionOp::Delete(r) => keys.add_all(&r.metadata),
                }
            }
        }
    }
    keys
}

fn lint_op(op: Operation) -> LintOp {
    match op {
        Operation::Get | Operation::BulkGet | Operation::Other => LintOp::Get,
        // HTTP copies URL metadata over every item and operation: it reaches the writes.
        Operation::Save | Operation::Transaction => LintOp::Save,
        Operation::Delete | Operation::BulkDelete => LintOp::Delete,
        Operation::Query => LintOp::Query,
    }
}

/// Step 3: the findings of every metadata map of the request, in request order. A key the
/// door copied from the URL into an inner map is reported once, at `request`. Allocates
/// nothing when every map is empty.
pub(super) fn lint_request(
    request: &StateRequest,
    url: &Metadata,
    op: Operation,
    target: &LintTarget<'_>,
) -> Vec<Finding> {
    let mut out = lint::lint(url, lint_op(op), Location::Request, target);
    let mut add = |m: &Metadata, lop: LintOp, at: Location| {
        if m.is_empty() {
            return;
        }
        let own = m.iter().filter(|(k, _)| !url.contains_key(k.as_str()));
        out.extend(lint::lint(own, lop, at, target));
    };
    match request {
        StateRequest::Get { metadata, .. } | StateRequest::BulkGet { metadata, .. } => {
            add(metadata, LintOp::Get, Location::Request)
        }
        StateRequest::Query { metadata, .. } => add(metadata, LintOp::Query, Location::Request),
        StateRequest::Save { items } => {
            for (i, r) in items.iter().enumerate() {
                add(&r.metadata, LintOp::Save, Location::Item(i));
            }
        }
        StateRequest::Delete { items } => {
            for (i, r) in items.iter().enumerate() {
                let at = if op == Operation::Delete {
                    Location::Request
                } else {
                    Location::Item(i)
                };
                add(&r.metadata, LintOp::Delete, at);
            }
        }
        StateRequest::Transaction(t) => {
            add(&t.metadata, LintOp::Transaction, Location::Transaction);
            for (i, o) in t.operations.iter().enumerate() {
                match o {
                    TransactionOp::Upsert(r) => {
                        add(&r.metadata, LintOp::Save, Location::Operation(i))
                    }
                    TransactionOp::Delete(r) => {
                        add(&r.metadata, LintOp::Delete, Location::Operation(i))
                    }
                }
            }
        }
    }
    out
}

fn list(findings: &[Finding]) -> String {
    findings
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Step 3's verdict: every finding is counted and (rate-limited) logged; an invalid value
/// fails the call in every mode (as the TTL parse always has: 400 with the operation's
/// error code), other warnings fail it under `reject` (`ERR_METADATA_LINT`), and under
/// `warn` the reported findings are returned to travel with the answer.
pub(super) fn judge(
    catalog: &Catalog,
    app: &AppId,
    index: usize,
    info: &StoreInfo,
    op: Operation,
    mode: LintMode,
    findings: Vec<Finding>,
) -> Result<Vec<Finding>, Error> {
    if findings.is_empty() {
        return Ok(findings);
    }
    let reported: Vec<Finding> = lint::reported(&findings, mode).cloned().collect();
    for f in &reported {
        metrics::record_lint_finding(app, &info.name, f.code.as_str(), f.severity().as_str());
        if catalog.lint_log_due(app, index, f.code) {
            // Keys and codes only: values may be secrets.
            tracing::warn!(
                app_id = %app, store = %info.name, code = %f.code, key = ?f.key,
                at = %f.location, suggestion = ?f.suggestion, detail = ?f.detail,
                mode = mode.as_str(),
                "request metadata lint finding (at most one line a minute per app, store and code)"
            );
        }
    }
    let errors: Vec<Finding> = reported
        .iter()
        .filter(|f| f.severity() == Severity::Error)
        .cloned()
        .collect();
    if !errors.is_empty() {
        return Err(Error::new(ErrorKind::InvalidOption, op)
            .store(&info.name)
            .app(app.as_ref())
            .detail(list(&errors)));
    }
    if lint::rejects(&reported, mode) {
        return Err(Error::new(ErrorKind::MetadataLint, op)
            .store(&info.name)
            .app(app.as_ref())
            .detail(list(&reported)));
    }
    Ok(reported)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Consistency, DeleteRequest, SetRequest, TransactionRequest};

    fn set(key: &str, metadata: Metadata) -> SetRequest {
        SetRequest {
            key: key.to_owned(),
            value: bytes::Bytes::from_static(b"1"),
            etag: None,
            options: Default::default(),
            ttl: None,
            metadata,
        }
    }

    fn delete(key: &str) -> DeleteRequest {
        DeleteRequest {
            key: key.to_owned(),
            etag: None,
            options: Default::default(),
            metadata: Metadata::new(),
        }
    }

    /// The hot path: a request whose maps are all empty is linted without allocating (the
    /// findings vector keeps capacity 0; iterating and probing empty maps allocates nothing,
    /// and the verdict returns at once on no findings).
    #[test]
    fn empty_metadata_lints_without_allocating() {
        let target = LintTarget::native("state.in-memory");
        let url = Metadata::new();
        let requests = [
            (
                Operation::Get,
                StateRequest::Get {
                    key: "k".into(),
                    consistency: Consistency::Unspecified,
                    metadata: Metadata::new(),
                },
            ),
            (
                Operation::BulkGet,
                StateRequest::BulkGet {
                    keys: vec!["a".into(), "b".into()],
                    parallelism: 0,
                    metadata: Metadata::new(),
                },
            ),
            (
                Operation::Save,
                StateRequest::Save {
                    items: vec![set("a", Metadata::new()), set("b", Metadata::new())],
                },
            ),
            (
                Operation::BulkDelete,
                StateRequest::Delete {
                    items: vec![delete("a"), delete("b")],
                },
            ),
            (
                Operation::Transaction,
                StateRequest::Transaction(TransactionRequest {
                    operations: vec![
                        TransactionOp::Upsert(set("a", Metadata::new())),
                        TransactionOp::Delete(delete("b")),
                    ],
                    metadata: Metadata::new(),
                }),
            ),
            (
                Operation::Query,
                StateRequest::Query {
                    query: "{}".into(),
                    metadata: Metadata::new(),
                },
            ),
        ];
        for (op, request) in &requests {
            let found = lint_request(request, &url, *op, &target);
            assert!(found.is_empty(), "{op:?}");
            assert_eq!(found.capacity(), 0, "{op:?} allocated");
        }
    }

    /// A key copied from the URL into every item is reported once, at `request`; item keys
    /// are reported per item.
    #[test]
    fn url_keys_are_reported_once() {
        let target = LintTarget::native("state.in-memory");
        let url: Metadata = [("ttlInSecond".to_owned(), "5".to_owned())].into();
        let mut item = url.clone();
        item.insert("keyPrefix".into(), "x".into());
        let request = StateRequest::Save {
            items: vec![set("a", url.clone()), set("b", item)],
        };
        let found = lint_request(&request, &url, Operation::Save, &target);
        let got: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].starts_with("unknown-key 'ttlInSecond' in request"));
        assert!(got[1].starts_with("component-level-key 'keyPrefix' in item[1]"));
    }
}
