//! The events the benchmark writes: 256 bytes of JSON-like data each (or another size, for
//! `factlog bench kafka --record-size`).
//!
//! A pool of distinct payloads is made once and shared (a `Bytes` clone is a reference count),
//! so the timed loops measure the store rather than string formatting.

use bytes::Bytes;
use factlog_store::{ContentType, EventType, NewEvent};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// Bytes of each event's data.
pub const DATA_BYTES: usize = 256;

/// Payloads in the pool at most; a power of two so that picking one is a mask.
const POOL: usize = 1024;
/// Bytes the pool holds at most: large payloads make a smaller pool.
const POOL_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Ready-made event parts.
#[derive(Debug)]
pub struct Payloads {
    /// A power of two long.
    data: Vec<Bytes>,
    event_type: EventType,
    content_type: ContentType,
}

impl Payloads {
    pub fn new() -> Self {
        Self::sized(DATA_BYTES)
    }

    /// Payloads of `bytes` bytes each (at least 2): a JSON object padded to the size, or a
    /// JSON string when the size is too small for the object.
    pub fn sized(bytes: usize) -> Self {
        let mut rng = StdRng::seed_from_u64(0xfac7_1097);
        let pool = (POOL_BYTES_MAX / bytes.max(1)).clamp(1, POOL);
        // The largest power of two not above `pool`.
        let pool = 1 << (usize::BITS - 1 - pool.leading_zeros());
        let data = (0..pool).map(|i| payload(i, bytes, &mut rng)).collect();
        Self {
            data,
            event_type: EventType::new("MoneyDeposited").expect("a valid event type"),
            content_type: ContentType::json(),
        }
    }

    /// The `n`-th event (of any stream): the pool is cycled.
    pub fn event(&self, n: u64) -> NewEvent {
        let data = self.data[(n as usize) & (self.data.len() - 1)].clone();
        NewEvent::new(self.event_type.clone(), self.content_type.clone(), data)
    }

    /// The data of every payload of the pool.
    pub fn data(&self) -> &[Bytes] {
        &self.data
    }

    /// `count` events starting with the `first`-th.
    pub fn events(&self, first: u64, count: u64) -> Vec<NewEvent> {
        (first..first + count).map(|n| self.event(n)).collect()
    }
}

/// One JSON value of exactly `bytes` bytes (at least 2): an object when it fits, else a string.
fn payload(i: usize, bytes: usize, rng: &mut StdRng) -> Bytes {
    let object = format!(
        r#"{{"accountId":"acct-{i:06}","amount":{},"currency":"EUR","reference":"{:016x}","note":""#,
        rng.gen_range(1..1_000_000u32),
        rng.r#gen::<u64>()
    );
    let (mut text, closing) = if object.len() + 2 <= bytes {
        (object, "\"}")
    } else {
        (String::from("\""), "\"")
    };
    while text.len() < bytes.max(2) - closing.len() {
        text.push(char::from(b'a' + rng.gen_range(0..26u8)));
    }
    text.push_str(closing);
    debug_assert_eq!(text.len(), bytes.max(2));
    Bytes::from(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_256_bytes_of_json() {
        let payloads = Payloads::new();
        for n in [0, 1, 1023, 1024] {
            let event = payloads.event(n);
            assert_eq!(event.data.len(), DATA_BYTES);
            assert!(serde_json::from_slice::<serde_json::Value>(&event.data).is_ok());
        }
    }

    #[test]
    fn other_sizes_are_json_of_that_size() {
        for bytes in [2, 3, 50, 100, 1000, 100_000] {
            let payloads = Payloads::sized(bytes);
            assert!(payloads.data().len().is_power_of_two());
            for n in [0, 1, 5000] {
                let event = payloads.event(n);
                assert_eq!(event.data.len(), bytes);
                assert!(serde_json::from_slice::<serde_json::Value>(&event.data).is_ok());
            }
        }
    }
}
