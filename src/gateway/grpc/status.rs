//! Renders an [`Error`] as a `tonic::Status`: code, message and `google.rpc` details exactly
//! as [`Error::wire`] decided them. Nothing here decides anything.

use tonic::{Code, Status};
use tonic_types::{BadRequest, ErrorDetail, ErrorInfo, Help, ResourceInfo, StatusExt};

use crate::error::{Detail, ERROR_DOMAIN, Error};
use crate::model::Protocol;

/// The gRPC status of `err`, with its details in the table's order and its receipt (if any)
/// in the trailing metadata.
pub fn status(err: &Error) -> Status {
    let mut st = bare_status(err);
    annotate(st.metadata_mut(), err.receipt(), err.lint());
    if let Some(secs) = err.retry_after() {
        st.metadata_mut()
            .insert("retry-after", secs.to_string().parse().expect("digits"));
    }
    st
}

/// Adds a call's annotations ([`crate::gateway::annotations`]) to gRPC metadata.
pub fn annotate(
    md: &mut tonic::metadata::MetadataMap,
    receipt: Option<&str>,
    lint: &[crate::capabilities::lint::Finding],
) {
    for (name, value) in crate::gateway::annotations(receipt, lint) {
        if let Ok(v) = tonic::metadata::MetadataValue::try_from(value.as_str()) {
            md.insert(name, v);
        }
    }
}

fn bare_status(err: &Error) -> Status {
    let wire = err.wire(Protocol::Grpc);
    let code = Code::from_i32(wire.grpc_code as i32);
    if wire.details.is_empty() {
        return Status::new(code, wire.message);
    }
    let details: Vec<ErrorDetail> = wire
        .details
        .into_iter()
        .map(|d| match d {
            Detail::ErrorInfo { reason, metadata } => ErrorInfo::new(
                reason,
                ERROR_DOMAIN,
                metadata
                    .unwrap_or_default()
                    .into_iter()
                    .collect::<std::collections::HashMap<_, _>>(),
            )
            .into(),
            Detail::ResourceInfo {
                resource_type,
                resource_name,
            } => ResourceInfo::new(resource_type, resource_name, "", "").into(),
            Detail::BadRequest { field, description } => {
                BadRequest::with_violation(field, description).into()
            }
            Detail::Help { description, url } => Help::with_link(description, url).into(),
        })
        .collect();
    Status::with_error_details_vec(code, wire.message, details)
}

/// The status code's name as Go's `codes.Code.String()` writes it (Dapr's metric label).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::model::Operation;

    #[test]
    fn illegal_key_carries_bad_request_resource_and_error_info_in_order() {
        let err = Error::new(ErrorKind::IllegalKey, Operation::Save)
            .store("s")
            .key("a||b");
        let st = status(&err);
        assert_eq!(st.code(), Code::InvalidArgument);
        assert_eq!(
            st.message(),
            "input key/keyPrefix 'a||b' can't contain '||'"
        );
        let details = st.get_error_details_vec();
        assert!(
            matches!(&details[0], ErrorDetail::BadRequest(b) if b.field_violations[0].field == "a||b")
        );
        assert!(
            matches!(&details[1], ErrorDetail::ResourceInfo(r) if r.resource_type == "state" && r.resource_name == "s")
        );
        assert!(matches!(&details[2], ErrorDetail::ErrorInfo(i)
            if i.reason == "DAPR_STATE_ILLEGAL_KEY" && i.domain == "dapr.io" && i.metadata.is_empty()));
    }

    #[test]
    fn plain_errors_have_no_details() {
        let st = status(&Error::new(ErrorKind::StoreFailure, Operation::BulkGet).detail("bad"));
        assert_eq!(st.code(), Code::Unknown);
        assert!(st.details().is_empty());
        // A value that is not JSON is the client's error.
        let st = status(&Error::new(ErrorKind::ValueNotJson, Operation::Save).detail("bad"));
        assert_eq!((st.code(), st.message()), (Code::InvalidArgument, "bad"));
    }

    #[test]
    fn code_names_follow_go() {
        assert_eq!(code_name(Code::Ok), "OK");
        assert_eq!(code_name(Code::Aborted), "Aborted");
        assert_eq!(code_name(Code::Cancelled), "Canceled");
    }
}
