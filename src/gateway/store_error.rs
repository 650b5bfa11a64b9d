//! How a store's failure becomes a wire error: the gateway owns this mapping, so the error
//! table in [`crate::error`] knows nothing of stores and the stores nothing of the wire.

use crate::actors::StoreError;
use crate::capabilities::Capability;
use crate::error::{Error, ErrorKind};
use crate::model::Operation;

impl Error {
    /// Converts a backend error met while running `op` on `store`.
    pub fn from_store(err: StoreError, op: Operation, store: &str, key: &str) -> Error {
        let kind = match &err {
            StoreError::EtagMismatch(_) => ErrorKind::EtagMismatch,
            StoreError::EtagInvalid(_) => ErrorKind::EtagInvalid,
            StoreError::Timeout(_) => ErrorKind::StoreTimeout,
            StoreError::CircuitOpen(_) => ErrorKind::StoreUnavailable,
            StoreError::Busy(capacity) => ErrorKind::StoreBusy {
                capacity: *capacity,
            },
            StoreError::Unsupported(Capability::Transactional) => {
                ErrorKind::TransactionsNotSupported
            }
            StoreError::Unsupported(Capability::QueryApi) => ErrorKind::QueryNotSupported,
            StoreError::InvalidQuery(_) => ErrorKind::QueryInvalid,
            // The store refused the request itself (a key too long once encoded, too many
            // operations, a value too large): the caller's to fix, so a 400, never a 500. A
            // transaction keeps Dapr's contract: every failure in it is ERR_STATE_TRANSACTION/500.
            StoreError::InvalidRequest(_)
                if !matches!(op, Operation::Query | Operation::Transaction) =>
            {
                ErrorKind::InvalidOption
            }
            _ if op == Operation::Query => ErrorKind::QueryFailed,
            _ => ErrorKind::StoreFailure,
        };
        Error::new(kind, op)
            .store(store)
            .key(key)
            .detail(err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Protocol;

    #[test]
    fn store_errors_map_to_kinds() {
        let cases = [
            (
                StoreError::EtagMismatch(None),
                Operation::Save,
                ErrorKind::EtagMismatch,
            ),
            (
                StoreError::EtagInvalid("x".into()),
                Operation::Delete,
                ErrorKind::EtagInvalid,
            ),
            (
                StoreError::Timeout(std::time::Duration::from_millis(5)),
                Operation::Get,
                ErrorKind::StoreTimeout,
            ),
            (
                StoreError::Unsupported(Capability::Transactional),
                Operation::Transaction,
                ErrorKind::TransactionsNotSupported,
            ),
            (
                StoreError::Unsupported(Capability::QueryApi),
                Operation::Query,
                ErrorKind::QueryNotSupported,
            ),
            (
                StoreError::InvalidQuery("bad".into()),
                Operation::Query,
                ErrorKind::QueryInvalid,
            ),
            (
                StoreError::Internal("boom".into()),
                Operation::Query,
                ErrorKind::QueryFailed,
            ),
            (
                StoreError::Unavailable("down".into()),
                Operation::Get,
                ErrorKind::StoreFailure,
            ),
            (
                StoreError::NotSent("refused".into()),
                Operation::Save,
                ErrorKind::StoreFailure,
            ),
        ];
        for (se, op, want) in cases {
            assert_eq!(
                *Error::from_store(se.clone(), op, "s", "k").kind(),
                want,
                "{se:?}"
            );
        }
        let e = Error::from_store(
            StoreError::EtagMismatch(Some("inner".into())),
            Operation::Save,
            "s",
            "k",
        );
        assert_eq!(
            e.wire(Protocol::Http).message,
            "failed saving state in state store s: possible etag mismatch. error from state store: inner"
        );
    }
}
