//! The error table, row by row, against spec §1.10.2 and §2.5.

use super::*;

fn kinds() -> Vec<ErrorKind> {
    ErrorKind::examples()
}

#[test]
fn quota_and_metadata_rows() {
    let e = err(
        ErrorKind::TooManyRequests {
            retry_after_secs: 2,
        },
        Operation::Get,
    );
    let (h, g) = (e.wire(Protocol::Http), e.wire(Protocol::Grpc));
    assert_eq!(
        (h.http_status, h.error_code),
        (429, "ERR_TOO_MANY_REQUESTS")
    );
    assert_eq!(g.grpc_code, GrpcCode::ResourceExhausted);
    assert_eq!(e.retry_after(), Some(2));
    assert!(h.message.contains("myapp") && h.message.contains("retry after 2 s"));
    let m = err(ErrorKind::MetadataLimit, Operation::Other).wire(Protocol::Http);
    assert_eq!((m.http_status, m.error_code), (400, "ERR_METADATA_LIMIT"));
    assert_eq!(
        err(ErrorKind::MetadataLimit, Operation::Other).retry_after(),
        None
    );
}

#[test]
fn nul_keys_are_illegal_with_their_own_message() {
    let e = Error::new(ErrorKind::IllegalKey, Operation::Get).key("a\0b");
    let w = e.wire(Protocol::Grpc);
    assert_eq!(w.message, "input key 'a\\0b' can't contain a NUL byte");
}

#[test]
fn log_summaries_never_carry_keys_or_client_details() {
    let e = Error::new(ErrorKind::EtagMismatch, Operation::Save)
        .store("s")
        .key("secret-key")
        .detail("value secret-value");
    assert_eq!(e.log_summary(), "ERR_STATE_SAVE (SaveState) store s");
    let e = Error::new(ErrorKind::StoreFailure, Operation::Get)
        .store("s")
        .key("secret-key")
        .detail("connection refused");
    assert_eq!(
        e.log_summary(),
        "ERR_STATE_GET (GetState) store s: connection refused"
    );
}

const OPS: [Operation; 8] = Operation::ALL;

fn err(kind: ErrorKind, op: Operation) -> Error {
    Error::new(kind, op)
        .store("mystore")
        .key("k1")
        .app("myapp")
        .detail("inner")
}

#[test]
fn every_kind_and_operation_renders_on_both_protocols() {
    for kind in kinds() {
        for op in OPS {
            let e = err(kind.clone(), op);
            let (h, g) = (e.wire(Protocol::Http), e.wire(Protocol::Grpc));
            assert!((400..600).contains(&h.http_status), "{kind:?}/{op:?}");
            assert_eq!(
                h.http_status, g.http_status,
                "status does not depend on protocol"
            );
            assert_eq!(h.grpc_code, g.grpc_code);
            assert!(
                !h.error_code.is_empty() && !h.message.is_empty(),
                "{kind:?}/{op:?}"
            );
            // Every gRPC error carries an ErrorInfo, except a bulk-get store failure, which
            // daprd returns as a plain error (gRPC Unknown, no details), and so is JSON that
            // fails to decode under contentType=application/json.
            let plain = (kind == ErrorKind::StoreFailure && op == Operation::BulkGet)
                || kind == ErrorKind::ValueNotJson;
            assert!(
                plain
                    || g.details
                        .iter()
                        .any(|d| matches!(d, Detail::ErrorInfo { .. })),
                "{kind:?}/{op:?} has no ErrorInfo on gRPC"
            );
        }
    }
}

/// (kind, op) → (HTTP, gRPC, errorCode, HTTP message).
#[test]
fn rows_match_the_spec() {
    use ErrorKind as K;
    use GrpcCode as G;
    let rows: Vec<(ErrorKind, Operation, u16, GrpcCode, &str, &str)> = vec![
        (
            K::StoreNotConfigured,
            Operation::Save,
            500,
            G::FailedPrecondition,
            "ERR_STATE_STORE_NOT_CONFIGURED",
            "state store mystore is not configured",
        ),
        (
            K::StoreNotFound,
            Operation::Get,
            400,
            G::InvalidArgument,
            "ERR_STATE_STORE_NOT_FOUND",
            "state store mystore is not found",
        ),
        (
            K::IllegalKey,
            Operation::Save,
            400,
            G::InvalidArgument,
            "ERR_MALFORMED_REQUEST",
            "api error: code = InvalidArgument desc = input key/keyPrefix 'k1' can't contain '||'",
        ),
        (
            K::Malformed,
            Operation::Save,
            400,
            G::InvalidArgument,
            "ERR_MALFORMED_REQUEST",
            "inner",
        ),
        (
            K::TransactionsNotSupported,
            Operation::Transaction,
            500,
            G::Unimplemented,
            "ERR_STATE_STORE_NOT_SUPPORTED",
            "state store mystore doesn't support transactions",
        ),
        (
            K::QueryNotSupported,
            Operation::Query,
            500,
            G::Internal,
            "ERR_STATE_STORE_NOT_SUPPORTED",
            "state store does not support querying",
        ),
        (
            K::TooManyTransactionOps { count: 3, max: 2 },
            Operation::Transaction,
            400,
            G::InvalidArgument,
            "ERR_STATE_STORE_TOO_MANY_TRANSACTIONS",
            "the transaction contains 3 operations, which is more than what the state store supports: 2",
        ),
        (
            K::UnsupportedOperation,
            Operation::Transaction,
            400,
            G::Unimplemented,
            "ERR_NOT_SUPPORTED_STATE_OPERATION",
            "operation type inner not supported",
        ),
        (
            K::EtagMismatch,
            Operation::Save,
            409,
            G::Aborted,
            "ERR_STATE_SAVE",
            "failed saving state in state store mystore: inner",
        ),
        (
            K::EtagInvalid,
            Operation::Save,
            400,
            G::InvalidArgument,
            "ERR_STATE_SAVE",
            "failed saving state in state store mystore: inner",
        ),
        (
            K::EtagMismatch,
            Operation::Delete,
            409,
            G::Aborted,
            "ERR_STATE_DELETE",
            "failed deleting state with key k1: inner",
        ),
        (
            K::EtagInvalid,
            Operation::Delete,
            400,
            G::InvalidArgument,
            "ERR_STATE_DELETE",
            "failed deleting state with key k1: inner",
        ),
        (
            K::EtagMismatch,
            Operation::BulkDelete,
            409,
            G::Aborted,
            "ERR_STATE_BULK_DELETE",
            "failed deleting state in state store mystore: inner",
        ),
        (
            K::EtagMismatch,
            Operation::Transaction,
            500,
            G::Internal,
            "ERR_STATE_TRANSACTION",
            "error while executing state transaction: inner",
        ),
        (
            K::StoreFailure,
            Operation::Get,
            500,
            G::Internal,
            "ERR_STATE_GET",
            "fail to get k1 from state store mystore: inner",
        ),
        (
            K::StoreFailure,
            Operation::BulkGet,
            500,
            G::Unknown,
            "ERR_STATE_BULK_GET",
            "inner",
        ),
        (
            K::StoreFailure,
            Operation::Transaction,
            500,
            G::Internal,
            "ERR_STATE_TRANSACTION",
            "error while executing state transaction: inner",
        ),
        (
            K::QueryFailed,
            Operation::Query,
            500,
            G::Internal,
            "ERR_STATE_QUERY",
            "state store mystore query failed: inner",
        ),
        (
            K::StoreTimeout,
            Operation::Get,
            504,
            G::DeadlineExceeded,
            "ERR_STATE_GET",
            "fail to get k1 from state store mystore: inner",
        ),
        (
            K::StoreUnavailable,
            Operation::Save,
            500,
            G::Unavailable,
            "ERR_STATE_SAVE",
            "failed saving state in state store mystore: inner",
        ),
        (
            K::RouteNotFound,
            Operation::Other,
            404,
            G::Unimplemented,
            "ERR_DIRECT_INVOKE",
            "failed getting app id either from the URL path or the header dapr-app-id",
        ),
        (
            K::EmptyKey,
            Operation::Save,
            400,
            G::InvalidArgument,
            "ERR_MALFORMED_REQUEST",
            "\"key\" is a required field",
        ),
        (
            K::BodyTooLarge { limit: 10 },
            Operation::Save,
            413,
            G::ResourceExhausted,
            "ERR_MALFORMED_REQUEST",
            "request body is larger than the limit of 10 bytes",
        ),
    ];
    for (kind, op, http, grpc, code, message) in rows {
        let w = err(kind.clone(), op).wire(Protocol::Http);
        assert_eq!(
            (w.http_status, w.grpc_code, w.error_code, w.message.as_str()),
            (http, grpc, code, message),
            "{kind:?}/{op:?}"
        );
    }
}

#[test]
fn rich_details_follow_dapr_order_and_content() {
    let http = err(ErrorKind::IllegalKey, Operation::Save).wire(Protocol::Http);
    assert_eq!(
        http.details,
        vec![
            Detail::BadRequest {
                field: "k1".into(),
                description: "input key/keyPrefix 'k1' can't contain '||'".into()
            },
            Detail::ResourceInfo {
                resource_type: "state".into(),
                resource_name: "mystore".into()
            },
            Detail::ErrorInfo {
                reason: "DAPR_STATE_ILLEGAL_KEY".into(),
                metadata: None
            },
        ]
    );
    let grpc = err(ErrorKind::IllegalKey, Operation::Save).wire(Protocol::Grpc);
    assert_eq!(grpc.message, "input key/keyPrefix 'k1' can't contain '||'");

    let nf_http = err(ErrorKind::StoreNotFound, Operation::Get).wire(Protocol::Http);
    let app = BTreeMap::from([("appID".to_owned(), "myapp".to_owned())]);
    assert_eq!(
        nf_http.details,
        vec![Detail::ErrorInfo {
            reason: "DAPR_STATE_NOT_FOUND".into(),
            metadata: Some(app)
        }]
    );
    let nf_grpc = err(ErrorKind::StoreNotFound, Operation::Get).wire(Protocol::Grpc);
    assert_eq!(
        nf_grpc.details,
        vec![Detail::ErrorInfo {
            reason: "DAPR_STATE_NOT_FOUND".into(),
            metadata: None
        }]
    );
    let nf_query = err(ErrorKind::StoreNotFound, Operation::Query).wire(Protocol::Http);
    assert!(matches!(
        &nf_query.details[0],
        Detail::ErrorInfo { metadata: None, .. }
    ));

    let tx = err(ErrorKind::TransactionsNotSupported, Operation::Transaction).wire(Protocol::Http);
    assert!(matches!(
        tx.details.as_slice(),
        [
            Detail::Help { .. },
            Detail::ResourceInfo { .. },
            Detail::ErrorInfo { .. }
        ]
    ));

    // Legacy errors: no details on HTTP, an ErrorInfo named after the code on gRPC.
    let save = err(ErrorKind::StoreFailure, Operation::Save);
    assert!(save.wire(Protocol::Http).details.is_empty());
    assert_eq!(
        save.wire(Protocol::Grpc).details,
        vec![Detail::ErrorInfo {
            reason: "ERR_STATE_SAVE".into(),
            metadata: None
        }]
    );
    let empty = err(ErrorKind::EmptyKey, Operation::Save).wire(Protocol::Grpc);
    assert_eq!(
        (empty.error_code, empty.message.as_str()),
        ("ERR_STATE_SAVE", "state key cannot be empty")
    );
}

#[test]
fn capability_rejections_name_store_capability_and_policy() {
    use crate::capabilities::Feature;
    let e = Error::new(
        ErrorKind::CapabilityRejected {
            capability: Feature::StrongConsistency,
            client: true,
        },
        Operation::Get,
    )
    .store("cache")
    .detail("capability strongConsistency (STRONG_CONSISTENCY), policy: reject");
    let http = e.wire(Protocol::Http);
    assert_eq!(
        (http.http_status, http.error_code),
        (400, "ERR_STATE_STORE_NOT_SUPPORTED")
    );
    assert_eq!(
        http.message,
        "state store cache rejected the GetState request: capability strongConsistency (STRONG_CONSISTENCY), policy: reject"
    );
    assert_eq!(e.wire(Protocol::Grpc).grpc_code, GrpcCode::InvalidArgument);
    let bulk = Error::new(
        ErrorKind::CapabilityRejected {
            capability: Feature::Bulk,
            client: false,
        },
        Operation::BulkGet,
    );
    assert_eq!(bulk.wire(Protocol::Http).http_status, 500);
    assert_eq!(bulk.wire(Protocol::Grpc).grpc_code, GrpcCode::Unimplemented);
    let tx = Error::new(ErrorKind::TransactionsNotSupported, Operation::Transaction)
        .store("kv")
        .detail("capability transactions (TRANSACTIONAL), policy: reject");
    assert_eq!(
        tx.wire(Protocol::Grpc).message,
        "state store kv doesn't support transactions (capability transactions (TRANSACTIONAL), policy: reject)"
    );
}
