//! The protobuf codec of the generated gRPC code: prost's, plus an item-count check made
//! on the raw bytes before decoding, so a 4 MiB message of two million empty items is
//! refused without allocating two million structs.
//!
//! No top-level field of a request may repeat more than [`max_repeated`] times (the
//! largest of the configured `maxBulkItems` and `maxTransactionOps`; the gateway applies
//! the exact limit of each operation after decoding).

use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Buf;
use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::ProstEncoder;

use crate::error::{Error, ErrorKind};
use crate::model::Operation;

/// 0: no check (clients, and before a server starts).
static MAX_REPEATED: AtomicUsize = AtomicUsize::new(0);

/// Raises the process-wide bound to at least `n` (several instances may share a process).
pub(super) fn allow_repeated(n: usize) {
    MAX_REPEATED.fetch_max(n, Ordering::Relaxed);
}

/// The current bound (0: none).
pub fn max_repeated() -> usize {
    MAX_REPEATED.load(Ordering::Relaxed)
}

/// prost encoding and bounded decoding of `T` / `U`.
#[derive(Debug, Clone)]
pub struct BoundedCodec<T, U> {
    _pd: PhantomData<(T, U)>,
}

impl<T, U> Default for BoundedCodec<T, U> {
    fn default() -> Self {
        BoundedCodec { _pd: PhantomData }
    }
}

impl<T, U> Codec for BoundedCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = BoundedDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        BoundedDecoder { _pd: PhantomData }
    }
}

/// Decodes `U` after checking its top-level field counts.
#[derive(Debug)]
pub struct BoundedDecoder<U> {
    _pd: PhantomData<U>,
}

impl<U: Message + Default> Decoder for BoundedDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        let max = max_repeated();
        if max > 0 {
            let n = buf.remaining();
            let chunk = buf.chunk();
            // The message is contiguous in tonic's buffer; count only what is there.
            let bytes = &chunk[..chunk.len().min(n)];
            if let Some(count) = most_repeated(bytes, max)
                && count > max
            {
                let e = Error::new(ErrorKind::LimitExceeded, Operation::Other).detail(format!(
                    "a field of the request repeats more than {max} times, the item limit"
                ));
                return Err(super::status(&e));
            }
        }
        // A message that is not protobuf is the client's error.
        U::decode(buf).map(Some).map_err(|e| {
            super::status(&Error::malformed(
                Operation::Other,
                format!("the message is not valid protobuf: {e}"),
            ))
        })
    }
}

fn varint(b: &[u8], i: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*i)?;
        *i += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// How often the most frequent top-level field occurs, stopping as soon as one passes
/// `stop`; `None` when the bytes are not a well-formed message (prost reports that).
fn most_repeated(b: &[u8], stop: usize) -> Option<usize> {
    // Field numbers of the state requests are small; count those, ignore the rest.
    let mut counts = [0usize; 32];
    let mut most = 0;
    let mut i = 0;
    while i < b.len() {
        let key = varint(b, &mut i)?;
        let field = (key >> 3) as usize;
        match key & 7 {
            0 => {
                varint(b, &mut i)?;
            }
            1 => i = i.checked_add(8)?,
            2 => {
                let len = usize::try_from(varint(b, &mut i)?).ok()?;
                i = i.checked_add(len)?;
            }
            5 => i = i.checked_add(4)?,
            _ => return None,
        }
        if let Some(c) = counts.get_mut(field) {
            *c += 1;
            most = most.max(*c);
            if most > stop {
                return Some(most);
            }
        }
    }
    Some(most)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_repeated_top_level_fields() {
        // field 1 (string "s"), then field 2 three times (empty messages).
        let msg = [0x0a, 0x01, b's', 0x12, 0x00, 0x12, 0x00, 0x12, 0x00];
        assert_eq!(most_repeated(&msg, 100), Some(3));
        assert_eq!(most_repeated(&msg, 1), Some(2), "stops early");
        assert_eq!(most_repeated(&[0x12, 0x05], 100), Some(1));
        assert_eq!(most_repeated(&[0x0f], 100), None);
    }
}
