//! What every operation checks the same way for both doors: keys, ETags, TTLs, counts; the
//! key prefix; a request's shape for negotiation; what an ignored option removes.

use crate::capabilities::lint::PARTITION_KEY;
use crate::capabilities::{Feature, Plan, Shape, Status};
use crate::config::Limits;
use crate::error::{Error, ErrorKind};
use crate::gateway::StoreInfo;
use crate::keys;
use crate::model::{
    Concurrency, Consistency, DeleteRequest, Metadata, Operation, SetRequest, TTL_IN_SECONDS, Ttl,
};

/// The longest ETag accepted. Every store's own ETags are far shorter (a number, a UUID, a
/// revision); a longer one can only be a mistake or an attack.
pub const MAX_ETAG_LEN: usize = 256;

/// Where a request is validated: the limits, the store, the calling app, the operation.
pub struct Scope<'a> {
    /// The configured limits.
    pub limits: &'a Limits,
    /// The store.
    pub info: &'a StoreInfo,
    /// The calling app.
    pub app: &'a str,
    /// The operation.
    pub op: Operation,
}

/// The shape of a request of `items` items, `partitionKey` looked up in `metadata`.
pub(super) fn shape_of(items: usize, metadata: &Metadata) -> Shape {
    Shape {
        items,
        partition_key: metadata.contains_key(PARTITION_KEY),
        ..Shape::default()
    }
}

/// Adds a write's options to `shape`.
pub(super) fn shape_of_set(shape: &mut Shape, r: &SetRequest) {
    shape.etag |= r.etag.is_some();
    shape.first_write |= r.etag.is_none() && r.options.concurrency == Concurrency::FirstWrite;
    shape.ttl |= matches!(r.ttl, Some(Ttl::Seconds(_)));
    shape.strong |= r.options.consistency == Consistency::Strong;
    shape.partition_key |= r.metadata.contains_key(PARTITION_KEY);
}

/// Adds a delete's options to `shape`.
pub(super) fn shape_of_delete(shape: &mut Shape, r: &DeleteRequest) {
    shape.etag |= r.etag.is_some();
    shape.strong |= r.options.consistency == Consistency::Strong;
    shape.partition_key |= r.metadata.contains_key(PARTITION_KEY);
}

/// Removes what the plan ignores from a write.
pub(super) fn degrade_set(plan: &Plan, r: &mut SetRequest) {
    if plan.status(Feature::Ttl) == Some(Status::Ignored) {
        r.ttl = None;
        r.metadata.remove(TTL_IN_SECONDS);
    }
    if plan.status(Feature::StrongConsistency) == Some(Status::Ignored) {
        r.options.consistency = Consistency::Eventual;
    }
}

/// Removes what the plan ignores from a delete.
pub(super) fn degrade_delete(plan: &Plan, r: &mut DeleteRequest) {
    if plan.status(Feature::StrongConsistency) == Some(Status::Ignored) {
        r.options.consistency = Consistency::Eventual;
    }
}

/// Why an ETag is not 1 to [`MAX_ETAG_LEN`] visible ASCII characters, if it is not.
fn etag_problem(etag: &str) -> Option<String> {
    if etag.len() > MAX_ETAG_LEN {
        return Some(format!(
            "it is {} bytes long, more than {MAX_ETAG_LEN}",
            etag.len()
        ));
    }
    etag.bytes()
        .find(|b| !(0x21..=0x7e).contains(b))
        .map(|b| format!("it contains the byte 0x{b:02x}"))
}

impl Scope<'_> {
    /// The store's key for the app's `key`.
    pub(super) fn prefixed(&self, key: &str) -> String {
        self.info.key_prefix.apply(self.app, &self.info.name, key)
    }

    /// Checks a key: legal characters, and no longer than `limits.maxKeyLength`.
    pub(super) fn check_key(&self, key: &str) -> Result<(), Error> {
        if !keys::is_legal(key) {
            return Err(Error::new(ErrorKind::IllegalKey, self.op)
                .store(&self.info.name)
                .key(key)
                .app(self.app));
        }
        let max = self.limits.max_key_length;
        if key.len() > max {
            return Err(Error::malformed(
                self.op,
                format!(
                    "the key is {} bytes long, more than the limit of {max} bytes",
                    key.len()
                ),
            ));
        }
        Ok(())
    }

    /// Checks an ETag as the client gave it (the HTTP `If-Match` header, a body's `etag`
    /// field, a gRPC `Etag` message), the same way for both doors: empty means no ETag
    /// (Dapr's contract); anything else must be 1 to [`MAX_ETAG_LEN`] visible ASCII
    /// characters. A value outside that is refused with a 400 / `INVALID_ARGUMENT` naming the
    /// field, never dropped: dropping it would turn a guarded write into an unconditional one.
    fn check_etag(&self, key: &str, etag: Option<String>) -> Result<Option<String>, Error> {
        let Some(etag) = etag.filter(|e| !e.is_empty()) else {
            return Ok(None);
        };
        let Some(problem) = etag_problem(&etag) else {
            return Ok(Some(etag));
        };
        let detail = format!(
            "invalid etag value: the ETag of key {key:?} (the If-Match header or the etag \
             field) must be 1 to {MAX_ETAG_LEN} visible ASCII characters: {problem}"
        );
        // Inside a transaction an invalid ETag is a malformed request (400), not a store
        // failure (daprd's 500): nothing was tried, and the client must fix the request.
        Err(if self.op == Operation::Transaction {
            Error::malformed(self.op, detail).store(&self.info.name)
        } else {
            Error::new(ErrorKind::EtagInvalid, self.op)
                .store(&self.info.name)
                .key(key)
                .detail(detail)
        })
    }

    /// A write checked (key, TTL, ETag) and its key prefixed.
    pub(super) fn set(&self, mut r: SetRequest) -> Result<SetRequest, Error> {
        if self.op == Operation::Save && r.key.is_empty() {
            return Err(Error::new(ErrorKind::EmptyKey, self.op).store(&self.info.name));
        }
        self.check_key(&r.key)?;
        r.ttl = Ttl::from_metadata(&r.metadata).map_err(|e| {
            Error::new(ErrorKind::InvalidOption, self.op)
                .store(&self.info.name)
                .key(&r.key)
                .detail(e)
        })?;
        r.etag = self.check_etag(&r.key, r.etag.take())?;
        r.key = self.prefixed(&r.key);
        Ok(r)
    }

    /// A delete checked (key, ETag) and its key prefixed.
    pub(super) fn delete(&self, mut r: DeleteRequest) -> Result<DeleteRequest, Error> {
        self.check_key(&r.key)?;
        r.etag = self.check_etag(&r.key, r.etag.take())?;
        r.key = self.prefixed(&r.key);
        Ok(r)
    }
}
