//! Step 3 (lint): every request-level metadata map is linted against the store's declared
//! keys and matrix, and the findings judged under the app's lint mode.

use crate::capabilities::lint::{self, Finding, LintMode, LintTarget, Location, Severity};
use crate::capabilities::portability::MetaKeys;
use crate::error::{Error, ErrorKind};
use crate::gateway::ops::StateOp;
use crate::gateway::{Catalog, StoreInfo};
use crate::metrics;
use crate::model::{AppId, Metadata, Operation};

/// The metadata buckets a request carries, at any level (request, item, transaction).
pub(super) fn meta_keys<O: StateOp>(request: &O::Request) -> MetaKeys {
    let mut keys = MetaKeys::default();
    O::metadata(request, &mut |m, _, _| keys.add_all(m));
    keys
}

/// Step 3: the findings of every metadata map of the request, in request order. A key the
/// door copied from the URL into an inner map is reported once, at `request`. Allocates
/// nothing when every map is empty.
pub(super) fn lint_request<O: StateOp>(
    request: &O::Request,
    url: &Metadata,
    target: &LintTarget<'_>,
) -> Vec<Finding> {
    let mut out = lint::lint(url, O::URL_LINT, Location::Request, target);
    O::metadata(request, &mut |m, lop, at| {
        if m.is_empty() {
            return;
        }
        let own = m.iter().filter(|(k, _)| !url.contains_key(k.as_str()));
        out.extend(lint::lint(own, lop, at, target));
    });
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
            // Keys and codes only: values may be secrets. Fields are values (an absent
            // suggestion or detail is no field), never Rust debug output.
            tracing::warn!(
                app_id = %app, store = %info.name, code = %f.code, key = %f.key,
                at = %f.location, suggestion = f.suggestion.map(tracing::field::display),
                detail = f.detail.as_deref(),
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
    use crate::gateway::ops;
    use crate::model::{Consistency, DeleteRequest, SetRequest, TransactionOp, TransactionRequest};

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
        fn none<O: StateOp>(request: &O::Request) {
            let target = LintTarget::native("state.in-memory");
            let found = lint_request::<O>(request, &Metadata::new(), &target);
            assert!(found.is_empty(), "{:?}", O::OP);
            assert_eq!(found.capacity(), 0, "{:?} allocated", O::OP);
        }
        none::<ops::Get>(&ops::GetInput {
            key: "k".into(),
            consistency: Consistency::Unspecified,
            metadata: Metadata::new(),
        });
        none::<ops::BulkGet>(&ops::BulkGetInput {
            keys: vec!["a".into(), "b".into()],
            parallelism: 0,
            metadata: Metadata::new(),
        });
        none::<ops::Save>(&vec![set("a", Metadata::new()), set("b", Metadata::new())]);
        none::<ops::Delete>(&delete("a"));
        none::<ops::BulkDelete>(&vec![delete("a"), delete("b")]);
        none::<ops::Transaction>(&TransactionRequest {
            operations: vec![
                TransactionOp::Upsert(set("a", Metadata::new())),
                TransactionOp::Delete(delete("b")),
            ],
            metadata: Metadata::new(),
        });
        none::<ops::Query>(&ops::QueryInput {
            query: "{}".into(),
            metadata: Metadata::new(),
        });
    }

    /// A key copied from the URL into every item is reported once, at `request`; item keys
    /// are reported per item.
    #[test]
    fn url_keys_are_reported_once() {
        let target = LintTarget::native("state.in-memory");
        let url: Metadata = [("ttlInSecond".to_owned(), "5".to_owned())].into();
        let mut item = url.clone();
        item.insert("keyPrefix".into(), "x".into());
        let request = vec![set("a", url.clone()), set("b", item)];
        let found = lint_request::<ops::Save>(&request, &url, &target);
        let got: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].starts_with("unknown-key 'ttlInSecond' in request"));
        assert!(got[1].starts_with("component-level-key 'keyPrefix' in item[1]"));
    }
}
