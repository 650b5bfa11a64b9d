//! The one place that decides how a failure looks on the wire.
//!
//! Every failure becomes an [`Error`]: a [`ErrorKind`], the [`Operation`] it happened in,
//! and its context (store, key, app). [`Error::wire`] maps `(kind, operation, protocol)` to
//! the HTTP status, gRPC code, Dapr `errorCode`, message and rich-error details that Dapr
//! itself would produce (spec §1.10, §2.5). The HTTP and gRPC front doors only render the
//! resulting [`Wire`]; neither decides anything. This module has no protocol types.

use std::collections::BTreeMap;
use std::fmt;

use crate::model::{Operation, Protocol};

/// gRPC status codes used by Mecha (numbering as in `google.rpc.Code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum GrpcCode {
    /// `UNKNOWN`.
    Unknown = 2,
    /// `INVALID_ARGUMENT`.
    InvalidArgument = 3,
    /// `DEADLINE_EXCEEDED`.
    DeadlineExceeded = 4,
    /// `NOT_FOUND`.
    NotFound = 5,
    /// `RESOURCE_EXHAUSTED`.
    ResourceExhausted = 8,
    /// `FAILED_PRECONDITION`.
    FailedPrecondition = 9,
    /// `ABORTED`.
    Aborted = 10,
    /// `UNIMPLEMENTED`.
    Unimplemented = 12,
    /// `INTERNAL`.
    Internal = 13,
    /// `UNAVAILABLE`.
    Unavailable = 14,
    /// `UNAUTHENTICATED`.
    Unauthenticated = 16,
}

/// The ErrorInfo domain of every Dapr error.
pub const ERROR_DOMAIN: &str = "dapr.io";
/// The Help link Dapr attaches to "transactions not supported".
pub const HELP_URL: &str =
    "https://docs.dapr.io/reference/components-reference/supported-state-stores/";
/// The Help link's description.
pub const HELP_DESCRIPTION: &str = "Check the list of state stores and the features they support";

/// One `google.rpc` error detail, protocol-neutral.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detail {
    /// `google.rpc.ErrorInfo` (domain is always [`ERROR_DOMAIN`]).
    ErrorInfo {
        /// The reason, e.g. `DAPR_STATE_NOT_FOUND`.
        reason: String,
        /// Metadata; `None` renders as JSON `null`.
        metadata: Option<BTreeMap<String, String>>,
    },
    /// `google.rpc.ResourceInfo`.
    ResourceInfo {
        /// Always `state` here.
        resource_type: String,
        /// The store name.
        resource_name: String,
    },
    /// `google.rpc.BadRequest` with one field violation.
    BadRequest {
        /// The offending field (the key).
        field: String,
        /// What is wrong with it.
        description: String,
    },
    /// `google.rpc.Help` with one link.
    Help {
        /// Link description.
        description: String,
        /// Link URL.
        url: String,
    },
}

/// How one error looks on one protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wire {
    /// HTTP status code.
    pub http_status: u16,
    /// gRPC status code.
    pub grpc_code: GrpcCode,
    /// Dapr's `errorCode`.
    pub error_code: &'static str,
    /// The message for this protocol.
    pub message: String,
    /// Rich details. On HTTP, an empty list means the legacy shape (no `details` key).
    pub details: Vec<Detail>,
}

/// What went wrong, independent of protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// No state store is configured at all.
    StoreNotConfigured,
    /// The named store is not configured (or not visible to the app).
    StoreNotFound,
    /// The key contains `||`.
    IllegalKey,
    /// The body or a field is malformed (legacy `ERR_MALFORMED_REQUEST`).
    Malformed,
    /// The body could not be read.
    BodyRead,
    /// The body is larger than the configured limit.
    BodyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body did not arrive within `limits.bodyTimeout`.
    BodyTimeout {
        /// The limit.
        limit: std::time::Duration,
    },
    /// The store shard already runs `actors.mailboxCapacity` requests and none finished
    /// within the request timeout.
    StoreBusy {
        /// The in-flight limit.
        capacity: usize,
    },
    /// A request option or request-level value is invalid (bad `consistency`, `ttlInSeconds`, ...).
    InvalidOption,
    /// A configured limit (bulk size, key length) was exceeded.
    LimitExceeded,
    /// The store does not do transactions.
    TransactionsNotSupported,
    /// The store does not do queries.
    QueryNotSupported,
    /// The store's effective matrix rejects a capability the call needs (the detail names
    /// the capability and the policy).
    CapabilityRejected {
        /// The capability.
        capability: crate::capabilities::Feature,
        /// Whether the request asked for an option the store cannot give (400 /
        /// `INVALID_ARGUMENT`) rather than an operation it lacks (500 / `UNIMPLEMENTED`).
        client: bool,
    },
    /// The request-metadata lint rejected the call (the store's or app's lint mode is
    /// `reject`); the detail lists every finding with its code and suggestion. Mecha's own
    /// code `ERR_METADATA_LINT`, 400 / `INVALID_ARGUMENT`.
    MetadataLint,
    /// A call its app's portability targets would serve differently, under `portability:
    /// reject` (`apps[].portableTo`); the detail names the target types and the capabilities
    /// or keys. Mecha's own code `ERR_NOT_PORTABLE`, 400 / `INVALID_ARGUMENT`.
    NotPortable,
    /// More transaction operations than the store (or Mecha's limit) allows.
    TooManyTransactionOps {
        /// Operations in the request.
        count: usize,
        /// The maximum.
        max: usize,
    },
    /// An unknown transaction operation type.
    UnsupportedOperation,
    /// gRPC SaveState with an empty key.
    EmptyKey,
    /// gRPC SaveState with item metadata `contentType=application/json` whose value is not
    /// JSON (daprd returns the raw decoder error as a plain `Unknown`; Mecha answers
    /// `INVALID_ARGUMENT`).
    ValueNotJson,
    /// A gRPC response would be larger than the message-size limit.
    ResponseTooLarge {
        /// The encoded response size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The request's ETag does not match.
    EtagMismatch,
    /// The request's ETag is not one the store could have issued.
    EtagInvalid,
    /// The store did not answer within the request timeout.
    StoreTimeout,
    /// The query failed to run.
    QueryFailed,
    /// The query body does not parse or its filter is invalid: the client's error, so 400
    /// (daprd answers 500; Mecha keeps daprd's code, message and details).
    QueryInvalid,
    /// Any other store failure.
    StoreFailure,
    /// The store's circuit breaker is open: the call failed at once without reaching it.
    StoreUnavailable,
    /// The API token is missing or wrong.
    Unauthorized,
    /// No route matches (daprd's service-invocation fallback).
    RouteNotFound,
    /// `/v1.0/healthz` while not ready.
    HealthNotReady,
    /// `/v1.0/healthz?appid=` with another app id.
    HealthAppIdMismatch,
    /// The calling app is over its quota (requests in flight or request rate).
    TooManyRequests {
        /// Whole seconds after which a retry may succeed (at least 1).
        retry_after_secs: u64,
    },
    /// An extended-metadata attribute would pass one of the app's metadata limits.
    MetadataLimit,
}

impl ErrorKind {
    /// One value of every kind (the capability rejection both as an option and as an
    /// operation): what the error tests and the reference table walk through.
    pub fn examples() -> Vec<ErrorKind> {
        vec![
            ErrorKind::StoreNotConfigured,
            ErrorKind::StoreNotFound,
            ErrorKind::IllegalKey,
            ErrorKind::Malformed,
            ErrorKind::BodyRead,
            ErrorKind::BodyTooLarge { limit: 10 },
            ErrorKind::BodyTimeout {
                limit: std::time::Duration::from_secs(1),
            },
            ErrorKind::StoreBusy { capacity: 4 },
            ErrorKind::InvalidOption,
            ErrorKind::LimitExceeded,
            ErrorKind::TransactionsNotSupported,
            ErrorKind::QueryNotSupported,
            ErrorKind::CapabilityRejected {
                capability: crate::capabilities::Feature::Ttl,
                client: true,
            },
            ErrorKind::CapabilityRejected {
                capability: crate::capabilities::Feature::Bulk,
                client: false,
            },
            ErrorKind::TooManyTransactionOps { count: 3, max: 2 },
            ErrorKind::MetadataLint,
            ErrorKind::NotPortable,
            ErrorKind::UnsupportedOperation,
            ErrorKind::EmptyKey,
            ErrorKind::EtagMismatch,
            ErrorKind::EtagInvalid,
            ErrorKind::StoreTimeout,
            ErrorKind::QueryFailed,
            ErrorKind::QueryInvalid,
            ErrorKind::StoreFailure,
            ErrorKind::StoreUnavailable,
            ErrorKind::Unauthorized,
            ErrorKind::RouteNotFound,
            ErrorKind::HealthNotReady,
            ErrorKind::HealthAppIdMismatch,
            ErrorKind::ValueNotJson,
            ErrorKind::ResponseTooLarge {
                size: 20,
                limit: 10,
            },
            ErrorKind::TooManyRequests {
                retry_after_secs: 2,
            },
            ErrorKind::MetadataLimit,
        ]
    }
}

/// A failure, with enough context to render it exactly as Dapr would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    op: Operation,
    store: String,
    key: String,
    app_id: String,
    detail: String,
    receipt: Option<String>,
    /// Boxed so the common error stays small (it travels in every `Result`).
    lint: Option<Box<[crate::capabilities::lint::Finding]>>,
}

impl Error {
    /// A new error of `kind` in operation `op`.
    pub fn new(kind: ErrorKind, op: Operation) -> Error {
        Error {
            kind,
            op,
            store: String::new(),
            key: String::new(),
            app_id: String::new(),
            detail: String::new(),
            receipt: None,
            lint: None,
        }
    }

    /// Sets the store name.
    pub fn store(mut self, store: impl Into<String>) -> Error {
        self.store = store.into();
        self
    }

    /// Sets the (unprefixed) key.
    pub fn key(mut self, key: impl Into<String>) -> Error {
        self.key = key.into();
        self
    }

    /// Sets the calling app id.
    pub fn app(mut self, app_id: impl Into<String>) -> Error {
        self.app_id = app_id.into();
        self
    }

    /// Sets the detail text (the inner error, or the whole message for `Malformed`).
    pub fn detail(mut self, detail: impl Into<String>) -> Error {
        self.detail = detail.into();
        self
    }

    /// Attaches the receipt of a call that failed after non-native decisions were applied
    /// (e.g. one item of an emulated bulk save failing its ETag check).
    pub fn with_receipt(mut self, receipt: &crate::capabilities::Receipt) -> Error {
        self.receipt = receipt.header_value();
        self
    }

    /// Attaches the lint findings reported (under `warn`) for a call that then failed for
    /// another reason; the doors render them as `mecha-lint`, as on success.
    pub fn with_lint(mut self, findings: Vec<crate::capabilities::lint::Finding>) -> Error {
        self.lint = (!findings.is_empty()).then(|| findings.into_boxed_slice());
        self
    }

    /// The lint findings the error response reports (`mecha-lint`), if any.
    pub fn lint(&self) -> &[crate::capabilities::lint::Finding] {
        self.lint.as_deref().unwrap_or(&[])
    }

    /// The `mecha-receipt` value the error response carries, if any.
    pub fn receipt(&self) -> Option<&str> {
        self.receipt.as_deref()
    }

    /// A legacy malformed-request error with `message`.
    pub fn malformed(op: Operation, message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Malformed, op).detail(message)
    }

    /// Seconds the client should wait before retrying (the `Retry-After` HTTP header and
    /// `retry-after` gRPC metadata), for errors that have one.
    pub fn retry_after(&self) -> Option<u64> {
        match self.kind {
            ErrorKind::TooManyRequests { retry_after_secs } => Some(retry_after_secs),
            _ => None,
        }
    }

    /// A log line for this error that carries no key, value or request content: the error
    /// code, operation and store, plus the detail for server-side failures (driver errors).
    pub fn log_summary(&self) -> String {
        let wire = self.wire(Protocol::Http);
        let mut out = format!("{} ({})", wire.error_code, self.op.method_name());
        if !self.store.is_empty() {
            out.push_str(&format!(" store {}", self.store));
        }
        if wire.http_status >= 500 && !self.detail.is_empty() {
            out.push_str(": ");
            out.push_str(&self.detail);
        }
        out
    }

    /// The kind.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The operation.
    pub fn operation(&self) -> Operation {
        self.op
    }

    /// Whether the failure is the client's (4xx) rather than Mecha's or the store's.
    pub fn is_client_error(&self) -> bool {
        self.wire(Protocol::Http).http_status < 500
    }

    /// The Dapr error-code metric category (`state` or `common`).
    pub fn category(&self) -> &'static str {
        match self.kind {
            ErrorKind::Malformed
            | ErrorKind::BodyRead
            | ErrorKind::BodyTooLarge { .. }
            | ErrorKind::BodyTimeout { .. }
            | ErrorKind::ResponseTooLarge { .. } => "common",
            ErrorKind::Unauthorized
            | ErrorKind::RouteNotFound
            | ErrorKind::TooManyRequests { .. }
            | ErrorKind::MetadataLimit => "common",
            ErrorKind::HealthNotReady | ErrorKind::HealthAppIdMismatch => "health",
            _ => "state",
        }
    }

    fn op_code(&self) -> &'static str {
        self.op.error_code()
    }

    /// The message of a store failure in this operation, as Dapr words it.
    fn op_message(&self) -> String {
        self.op
            .failure_message(&self.store, &self.key, &self.detail)
    }

    fn error_info(&self, reason: &str, metadata: Option<BTreeMap<String, String>>) -> Detail {
        Detail::ErrorInfo {
            reason: reason.to_owned(),
            metadata,
        }
    }

    fn resource_info(&self) -> Detail {
        Detail::ResourceInfo {
            resource_type: "state".into(),
            resource_name: self.store.clone(),
        }
    }

    /// How this error looks on `protocol`. This is the whole error table of the project.
    pub fn wire(&self, protocol: Protocol) -> Wire {
        use ErrorKind as K;
        use GrpcCode as G;
        let http = protocol == Protocol::Http;
        // Legacy errors have no details on HTTP; on gRPC Dapr attaches an ErrorInfo whose
        // reason is the error code.
        let legacy = |status: u16, grpc: GrpcCode, code: &'static str, message: String| Wire {
            http_status: status,
            grpc_code: grpc,
            error_code: code,
            message,
            details: if http {
                Vec::new()
            } else {
                vec![self.error_info(code, None)]
            },
        };
        // ErrorInfo metadata carries the app id on HTTP (but not on the query route), never on gRPC.
        let app_metadata = || {
            (http && self.op != Operation::Query)
                .then(|| BTreeMap::from([("appID".to_owned(), self.app_id.clone())]))
        };
        match &self.kind {
            K::StoreNotConfigured => Wire {
                http_status: 500,
                grpc_code: G::FailedPrecondition,
                error_code: "ERR_STATE_STORE_NOT_CONFIGURED",
                message: format!("state store {} is not configured", self.store),
                details: vec![self.error_info("DAPR_STATE_NOT_CONFIGURED", app_metadata())],
            },
            K::StoreNotFound => Wire {
                http_status: 400,
                grpc_code: G::InvalidArgument,
                error_code: "ERR_STATE_STORE_NOT_FOUND",
                message: format!("state store {} is not found", self.store),
                details: vec![self.error_info("DAPR_STATE_NOT_FOUND", app_metadata())],
            },
            K::IllegalKey => {
                let plain = if crate::keys::problem(&self.key) == Some(crate::keys::KeyProblem::Nul)
                {
                    format!(
                        "input key '{}' can't contain a NUL byte",
                        self.key.escape_debug()
                    )
                } else {
                    format!("input key/keyPrefix '{}' can't contain '||'", self.key)
                };
                Wire {
                    http_status: 400,
                    grpc_code: G::InvalidArgument,
                    error_code: "ERR_MALFORMED_REQUEST",
                    message: if http {
                        format!("api error: code = InvalidArgument desc = {plain}")
                    } else {
                        plain.clone()
                    },
                    details: vec![
                        Detail::BadRequest {
                            field: self.key.clone(),
                            description: plain,
                        },
                        self.resource_info(),
                        self.error_info("DAPR_STATE_ILLEGAL_KEY", None),
                    ],
                }
            }
            K::Malformed | K::LimitExceeded => legacy(
                400,
                G::InvalidArgument,
                "ERR_MALFORMED_REQUEST",
                self.detail.clone(),
            ),
            K::BodyRead => legacy(
                400,
                G::InvalidArgument,
                "ERR_BODY_READ",
                format!("failed to read request body: {}", self.detail),
            ),
            K::BodyTooLarge { limit } => legacy(
                413,
                G::ResourceExhausted,
                "ERR_MALFORMED_REQUEST",
                format!("request body is larger than the limit of {limit} bytes"),
            ),
            K::BodyTimeout { limit } => legacy(
                408,
                G::DeadlineExceeded,
                "ERR_BODY_READ",
                format!(
                    "failed to read request body: not received within {}ms",
                    limit.as_millis()
                ),
            ),
            K::StoreBusy { capacity } => legacy(
                503,
                G::ResourceExhausted,
                self.op_code(),
                format!(
                    "state store {} is busy: {capacity} requests already in flight on this serving thread and none finished within the request timeout",
                    self.store
                ),
            ),
            K::InvalidOption => legacy(400, G::InvalidArgument, self.op_code(), self.op_message()),
            K::TransactionsNotSupported => Wire {
                http_status: 500,
                grpc_code: G::Unimplemented,
                error_code: "ERR_STATE_STORE_NOT_SUPPORTED",
                message: format!(
                    "state store {} doesn't support transactions{}",
                    self.store,
                    self.detail_suffix()
                ),
                details: vec![
                    Detail::Help {
                        description: HELP_DESCRIPTION.into(),
                        url: HELP_URL.into(),
                    },
                    self.resource_info(),
                    self.error_info("DAPR_STATE_TRANSACTIONS_NOT_SUPPORTED", None),
                ],
            },
            K::QueryNotSupported => Wire {
                http_status: 500,
                grpc_code: G::Internal,
                error_code: "ERR_STATE_STORE_NOT_SUPPORTED",
                message: format!(
                    "state store does not support querying{}",
                    self.detail_suffix()
                ),
                details: vec![
                    self.resource_info(),
                    self.error_info("DAPR_STATE_QUERYING_NOT_SUPPORTED", None),
                ],
            },
            K::CapabilityRejected { capability, client } => Wire {
                http_status: if *client { 400 } else { 500 },
                grpc_code: if *client {
                    G::InvalidArgument
                } else {
                    G::Unimplemented
                },
                error_code: "ERR_STATE_STORE_NOT_SUPPORTED",
                message: format!(
                    "state store {} rejected the {} request: {}",
                    self.store,
                    self.op.method_name(),
                    self.detail
                ),
                details: vec![
                    self.resource_info(),
                    self.error_info(
                        "MECHA_CAPABILITY_REJECTED",
                        Some(BTreeMap::from([(
                            "capability".to_owned(),
                            capability.policy_name().to_owned(),
                        )])),
                    ),
                ],
            },
            K::MetadataLint => Wire {
                http_status: 400,
                grpc_code: G::InvalidArgument,
                error_code: "ERR_METADATA_LINT",
                message: format!(
                    "state store {} rejected the {} request metadata (lint: reject): {}",
                    self.store,
                    self.op.method_name(),
                    self.detail
                ),
                details: vec![
                    self.resource_info(),
                    self.error_info("MECHA_METADATA_LINT", None),
                ],
            },
            K::NotPortable => Wire {
                http_status: 400,
                grpc_code: G::InvalidArgument,
                error_code: "ERR_NOT_PORTABLE",
                message: format!(
                    "app {} requires its calls to stay portable (portability: reject); this {} on state store {} is not: {}",
                    self.app_id,
                    self.op.method_name(),
                    self.store,
                    self.detail
                ),
                details: vec![
                    self.resource_info(),
                    self.error_info("MECHA_NOT_PORTABLE", None),
                ],
            },
            K::TooManyTransactionOps { count, max } => Wire {
                http_status: 400,
                grpc_code: G::InvalidArgument,
                error_code: "ERR_STATE_STORE_TOO_MANY_TRANSACTIONS",
                message: format!(
                    "the transaction contains {count} operations, which is more than what the state store supports: {max}"
                ),
                details: vec![
                    self.resource_info(),
                    self.error_info(
                        "DAPR_STATE_TOO_MANY_TRANSACTIONS",
                        Some(BTreeMap::from([
                            ("currentOpsTransaction".to_owned(), count.to_string()),
                            ("maxOpsPerTransaction".to_owned(), max.to_string()),
                        ])),
                    ),
                ],
            },
            K::UnsupportedOperation => legacy(
                400,
                G::Unimplemented,
                "ERR_NOT_SUPPORTED_STATE_OPERATION",
                format!("operation type {} not supported", self.detail),
            ),
            K::EmptyKey => Wire {
                http_status: 400,
                grpc_code: G::InvalidArgument,
                error_code: if http {
                    "ERR_MALFORMED_REQUEST"
                } else {
                    "ERR_STATE_SAVE"
                },
                message: if http {
                    "\"key\" is a required field".into()
                } else {
                    "state key cannot be empty".into()
                },
                details: if http {
                    Vec::new()
                } else {
                    vec![self.error_info("ERR_STATE_SAVE", None)]
                },
            },
            // daprd hands the JSON decoder's error back as is (gRPC `Unknown`); a value the
            // client got wrong is INVALID_ARGUMENT here, with the code as ErrorInfo reason.
            K::ValueNotJson => legacy(
                400,
                G::InvalidArgument,
                "ERR_MALFORMED_REQUEST",
                self.detail.clone(),
            ),
            // Ours: daprd's gRPC server refuses to send such a message with grpc-go's
            // ResourceExhausted; we say so before encoding, with our own code.
            K::ResponseTooLarge { size, limit } => legacy(
                500,
                G::ResourceExhausted,
                "ERR_RESPONSE_TOO_LARGE",
                format!(
                    "the response is {size} bytes, larger than the message size limit of {limit} bytes"
                ),
            ),
            K::QueryFailed => Wire {
                http_status: 500,
                grpc_code: G::Internal,
                error_code: "ERR_STATE_QUERY",
                message: self.op_message_for(Operation::Query),
                details: vec![
                    self.resource_info(),
                    self.error_info("DAPR_STATE_QUERY_FAILED", None),
                ],
            },
            K::QueryInvalid => Wire {
                http_status: 400,
                grpc_code: G::InvalidArgument,
                error_code: "ERR_STATE_QUERY",
                message: self.op_message_for(Operation::Query),
                details: vec![
                    self.resource_info(),
                    self.error_info("DAPR_STATE_QUERY_FAILED", None),
                ],
            },
            // A transaction never answers 409: every failure in it is ERR_STATE_TRANSACTION/500.
            K::EtagMismatch | K::EtagInvalid if self.op == Operation::Transaction => {
                legacy(500, G::Internal, self.op_code(), self.op_message())
            }
            K::EtagMismatch => legacy(409, G::Aborted, self.op_code(), self.op_message()),
            K::EtagInvalid => legacy(400, G::InvalidArgument, self.op_code(), self.op_message()),
            K::StoreTimeout => legacy(504, G::DeadlineExceeded, self.op_code(), self.op_message()),
            K::StoreFailure if self.op == Operation::BulkGet => Wire {
                details: Vec::new(),
                ..legacy(500, G::Unknown, self.op_code(), self.op_message())
            },
            K::StoreFailure => legacy(500, G::Internal, self.op_code(), self.op_message()),
            // daprd answers 500 with the op's code for a breaker rejection; Mecha keeps that
            // and says UNAVAILABLE over gRPC so clients see a retryable condition.
            K::StoreUnavailable => legacy(500, G::Unavailable, self.op_code(), self.op_message()),
            K::Unauthorized => Wire {
                http_status: 401,
                grpc_code: G::Unauthenticated,
                error_code: "ERR_UNAUTHORIZED",
                message: if http {
                    "invalid api token".into()
                } else {
                    "Unauthorized".into()
                },
                details: vec![self.error_info(
                    "Unauthorized",
                    Some(BTreeMap::from([
                        ("http.code".to_owned(), "401".to_owned()),
                        (
                            "http.error_message".to_owned(),
                            self.detail.chars().take(63).collect(),
                        ),
                    ])),
                )],
            },
            K::RouteNotFound => legacy(
                404,
                G::Unimplemented,
                "ERR_DIRECT_INVOKE",
                "failed getting app id either from the URL path or the header dapr-app-id".into(),
            ),
            K::HealthNotReady => legacy(
                500,
                G::Unavailable,
                "ERR_HEALTH_NOT_READY",
                format!("dapr is not ready: [{}]", self.detail),
            ),
            K::TooManyRequests { retry_after_secs } => legacy(
                429,
                G::ResourceExhausted,
                "ERR_TOO_MANY_REQUESTS",
                format!(
                    "app {} is over its quota ({}); retry after {retry_after_secs} s",
                    self.app_id, self.detail
                ),
            ),
            K::MetadataLimit => legacy(
                400,
                G::ResourceExhausted,
                "ERR_METADATA_LIMIT",
                self.detail.clone(),
            ),
            K::HealthAppIdMismatch => legacy(
                500,
                G::FailedPrecondition,
                "ERR_HEALTH_APPID_NOT_MATCH",
                "dapr app-id does not match".into(),
            ),
        }
    }

    /// ` (detail)` when a capability decision explains the error (see
    /// [`ErrorKind::CapabilityRejected`]), empty for daprd's own wording.
    fn detail_suffix(&self) -> String {
        if self.detail.starts_with("capability ") {
            format!(" ({})", self.detail)
        } else {
            String::new()
        }
    }

    fn op_message_for(&self, op: Operation) -> String {
        Error { op, ..self.clone() }.op_message()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let wire = self.wire(Protocol::Grpc);
        write!(f, "{}: {}", wire.error_code, wire.message)
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod grpc_table;
