//! Random bits through the standard library's `RandomState`: each thread draws its
//! keys from the operating system's randomness once, and every `RandomState` made
//! after that on the thread takes the previous keys with the first one incremented.
//! Hashing under them gives bits that differ from call to call and from process to
//! process: enough for tokens that must not repeat and for spreading retries; not
//! for secrets.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// 64 random bits: `salt` hashed under the next `RandomState`'s keys.
pub fn random_u64(salt: u64) -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(salt);
    hasher.finish()
}
