//! The one owner of each request limit's rule and message. The doors call these before
//! parsing (counting items in the raw bytes, so an oversized request costs no allocation);
//! the pipeline calls the same functions on the parsed request, so a limit reads the same
//! whichever door or step met it.

use crate::error::{Error, ErrorKind};
use crate::model::Operation;

/// `limits.maxBulkItems`: a request holds at most `max` items (keys, items to save or
/// delete); `what` names them in the message.
pub fn items(op: Operation, what: &str, n: usize, max: usize) -> Result<(), Error> {
    if n > max {
        return Err(Error::new(ErrorKind::LimitExceeded, op).detail(format!(
            "the request has {n} {what}, more than the limit of {max}"
        )));
    }
    Ok(())
}

/// A transaction holds at most `max` operations: the store's own limit where it has one,
/// else `limits.maxTransactionOps`.
pub fn transaction_ops(op: Operation, count: usize, max: usize, store: &str) -> Result<(), Error> {
    if count > max {
        return Err(Error::new(ErrorKind::TooManyTransactionOps { count, max }, op).store(store));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_refuse_only_past_the_maximum() {
        assert!(items(Operation::BulkGet, "keys", 3, 3).is_ok());
        let e = items(Operation::BulkGet, "keys", 4, 3).unwrap_err();
        assert_eq!(*e.kind(), ErrorKind::LimitExceeded);
        assert!(transaction_ops(Operation::Transaction, 2, 2, "s").is_ok());
        let e = transaction_ops(Operation::Transaction, 3, 2, "s").unwrap_err();
        assert_eq!(
            *e.kind(),
            ErrorKind::TooManyTransactionOps { count: 3, max: 2 }
        );
    }
}
