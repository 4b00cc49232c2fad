//! Idempotency keys, remembered per hook as 128-bit keyed fingerprints
//! (two SipHash-1-3 digests with per-process random keys) instead of the key
//! strings: start-up rebuilds them without one allocation per key, and they
//! take a fixed 40 bytes each. Two different keys would have to collide in
//! 128 random-keyed bits to be confused.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

#[derive(Debug, Clone, Default)]
pub struct Fingerprinter {
    high: RandomState,
    low: RandomState,
}

impl Fingerprinter {
    pub fn of(&self, key: &[u8]) -> u128 {
        (u128::from(self.high.hash_one(key)) << 64) | u128::from(self.low.hash_one(key))
    }
}

/// Fingerprints are already uniformly random: use their low bits as the table hash.
#[derive(Default)]
pub struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u128(&mut self, value: u128) {
        self.0 = value as u64;
    }
}

pub type KeyMap<V> = HashMap<u128, V, BuildHasherDefault<PassThrough>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_same_fingerprint_different_keys_differ() {
        let f = Fingerprinter::default();
        assert_eq!(f.of(b"delivery-1"), f.of(b"delivery-1"));
        assert_ne!(f.of(b"delivery-1"), f.of(b"delivery-2"));
        let mut map: KeyMap<u64> = KeyMap::default();
        map.insert(f.of(b"a"), 1);
        assert_eq!(map.get(&f.of(b"a")), Some(&1));
        assert_eq!(map.get(&f.of(b"b")), None);
    }
}
