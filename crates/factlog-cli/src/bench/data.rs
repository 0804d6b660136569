//! The events the benchmark writes: 256 bytes of JSON-like data each.
//!
//! A pool of distinct payloads is made once and shared (a `Bytes` clone is a reference count),
//! so the timed loops measure the store rather than string formatting.

use bytes::Bytes;
use factlog_store::{ContentType, EventType, NewEvent};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// Bytes of each event's data.
pub const DATA_BYTES: usize = 256;

/// Payloads in the pool; a power of two so that picking one is a mask.
const POOL: usize = 1024;

/// Ready-made event parts.
#[derive(Debug)]
pub struct Payloads {
    data: Vec<Bytes>,
    event_type: EventType,
    content_type: ContentType,
}

impl Payloads {
    pub fn new() -> Self {
        let mut rng = StdRng::seed_from_u64(0xfac7_1097);
        let data = (0..POOL).map(|i| payload(i, &mut rng)).collect();
        Self {
            data,
            event_type: EventType::new("MoneyDeposited").expect("a valid event type"),
            content_type: ContentType::json(),
        }
    }

    /// The `n`-th event (of any stream): the pool is cycled.
    pub fn event(&self, n: u64) -> NewEvent {
        let data = self.data[(n as usize) & (POOL - 1)].clone();
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

/// One JSON object of exactly [`DATA_BYTES`] bytes.
fn payload(i: usize, rng: &mut StdRng) -> Bytes {
    let mut text = format!(
        r#"{{"accountId":"acct-{i:06}","amount":{},"currency":"EUR","reference":"{:016x}","note":""#,
        rng.gen_range(1..1_000_000u32),
        rng.r#gen::<u64>()
    );
    let closing = "\"}";
    while text.len() < DATA_BYTES - closing.len() {
        text.push(char::from(b'a' + rng.gen_range(0..26u8)));
    }
    text.push_str(closing);
    debug_assert_eq!(text.len(), DATA_BYTES);
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
}
