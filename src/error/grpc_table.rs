//! The gRPC column of the error table (spec §2.5) and the gRPC-only rows.

use super::*;

fn grpc(kind: ErrorKind, op: Operation) -> Wire {
    Error::new(kind, op)
        .store("s")
        .key("k")
        .wire(Protocol::Grpc)
}

fn reasons(w: &Wire) -> Vec<&str> {
    w.details
        .iter()
        .filter_map(|d| match d {
            Detail::ErrorInfo { reason, .. } => Some(reason.as_str()),
            _ => None,
        })
        .collect()
}

/// The gRPC column of spec §2.5, row by row.
#[test]
fn grpc_codes_follow_the_spec_summary() {
    use ErrorKind as K;
    use GrpcCode as G;
    use Operation as O;
    let rows: &[(ErrorKind, Operation, GrpcCode, &str)] = &[
        (
            K::StoreNotConfigured,
            O::Get,
            G::FailedPrecondition,
            "DAPR_STATE_NOT_CONFIGURED",
        ),
        (
            K::StoreNotFound,
            O::Save,
            G::InvalidArgument,
            "DAPR_STATE_NOT_FOUND",
        ),
        (
            K::IllegalKey,
            O::Get,
            G::InvalidArgument,
            "DAPR_STATE_ILLEGAL_KEY",
        ),
        (K::EtagMismatch, O::Save, G::Aborted, "ERR_STATE_SAVE"),
        (K::EtagMismatch, O::Delete, G::Aborted, "ERR_STATE_DELETE"),
        (
            K::EtagMismatch,
            O::BulkDelete,
            G::Aborted,
            "ERR_STATE_BULK_DELETE",
        ),
        (
            K::EtagInvalid,
            O::Save,
            G::InvalidArgument,
            "ERR_STATE_SAVE",
        ),
        (
            K::EtagMismatch,
            O::Transaction,
            G::Internal,
            "ERR_STATE_TRANSACTION",
        ),
        (
            K::TransactionsNotSupported,
            O::Transaction,
            G::Unimplemented,
            "DAPR_STATE_TRANSACTIONS_NOT_SUPPORTED",
        ),
        (
            K::UnsupportedOperation,
            O::Transaction,
            G::Unimplemented,
            "ERR_NOT_SUPPORTED_STATE_OPERATION",
        ),
        (
            K::TooManyTransactionOps { count: 3, max: 2 },
            O::Transaction,
            G::InvalidArgument,
            "DAPR_STATE_TOO_MANY_TRANSACTIONS",
        ),
        (
            K::MetadataLint,
            O::Save,
            G::InvalidArgument,
            "MECHA_METADATA_LINT",
        ),
        (
            K::NotPortable,
            O::Save,
            G::InvalidArgument,
            "MECHA_NOT_PORTABLE",
        ),
        (
            K::QueryNotSupported,
            O::Query,
            G::Internal,
            "DAPR_STATE_QUERYING_NOT_SUPPORTED",
        ),
        (
            K::QueryFailed,
            O::Query,
            G::Internal,
            "DAPR_STATE_QUERY_FAILED",
        ),
        (K::StoreFailure, O::Get, G::Internal, "ERR_STATE_GET"),
        (K::StoreUnavailable, O::Get, G::Unavailable, "ERR_STATE_GET"),
        (K::EmptyKey, O::Save, G::InvalidArgument, "ERR_STATE_SAVE"),
        (
            K::BodyTooLarge { limit: 10 },
            O::Save,
            G::ResourceExhausted,
            "ERR_MALFORMED_REQUEST",
        ),
        (
            K::ResponseTooLarge {
                size: 11,
                limit: 10,
            },
            O::BulkGet,
            G::ResourceExhausted,
            "ERR_RESPONSE_TOO_LARGE",
        ),
    ];
    for (kind, op, code, reason) in rows {
        let w = grpc(kind.clone(), *op);
        assert_eq!(w.grpc_code, *code, "{kind:?} in {op:?}");
        assert_eq!(reasons(&w), [*reason], "{kind:?} in {op:?}");
    }
}

/// daprd's plain errors carry no details on gRPC (they surface as `Unknown`).
#[test]
fn plain_grpc_errors_have_no_details() {
    let w = grpc(ErrorKind::StoreFailure, Operation::BulkGet);
    assert_eq!(w.grpc_code, GrpcCode::Unknown);
    assert!(w.details.is_empty());
}

/// Bad input is the client's error on gRPC too: a SaveState value that is not
/// JSON, a value nesting too deep, and a message that is not protobuf.
#[test]
fn invalid_values_and_messages_are_invalid_argument() {
    for kind in [
        ErrorKind::ValueNotJson,
        ErrorKind::LimitExceeded,
        ErrorKind::Malformed,
    ] {
        let w = grpc(kind.clone(), Operation::Save);
        assert_eq!(w.grpc_code, GrpcCode::InvalidArgument, "{kind:?}");
        assert_eq!(reasons(&w), ["ERR_MALFORMED_REQUEST"], "{kind:?}");
    }
}

/// The gRPC-only rows: messages, and the HTTP side they would have.
#[test]
fn grpc_only_rows() {
    let e = Error::new(ErrorKind::ValueNotJson, Operation::Save)
        .detail("expected value at line 1 column 1");
    assert_eq!(
        e.wire(Protocol::Grpc).message,
        "expected value at line 1 column 1"
    );
    assert_eq!(e.wire(Protocol::Http).http_status, 400);
    let e = Error::new(
        ErrorKind::ResponseTooLarge {
            size: 11,
            limit: 10,
        },
        Operation::Get,
    );
    assert_eq!(
        e.wire(Protocol::Grpc).message,
        "the response is 11 bytes, larger than the message size limit of 10 bytes"
    );
    let e = Error::new(ErrorKind::EmptyKey, Operation::Save);
    assert_eq!(e.wire(Protocol::Grpc).message, "state key cannot be empty");
    let e = Error::new(ErrorKind::Unauthorized, Operation::Other)
        .detail("missing api token in request metadata");
    let w = e.wire(Protocol::Grpc);
    assert_eq!(
        (w.grpc_code, w.message.as_str()),
        (GrpcCode::Unauthenticated, "Unauthorized")
    );
    assert!(
        matches!(&w.details[0], Detail::ErrorInfo { reason, metadata: Some(m) }
        if reason == "Unauthorized" && m["http.code"] == "401")
    );
}

/// ErrorInfo metadata: the app id on HTTP, never on gRPC.
#[test]
fn store_lookup_metadata_is_nil_on_grpc() {
    let e = Error::new(ErrorKind::StoreNotFound, Operation::Get)
        .store("x")
        .app("a");
    assert!(matches!(
        &e.wire(Protocol::Grpc).details[0],
        Detail::ErrorInfo { metadata: None, .. }
    ));
    assert!(matches!(
        &e.wire(Protocol::Http).details[0],
        Detail::ErrorInfo {
            metadata: Some(_),
            ..
        }
    ));
}
