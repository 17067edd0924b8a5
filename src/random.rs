//! Random bits from the operating system, through the standard library: the keys
//! of `RandomState` are drawn from the OS's randomness. Enough for tokens that
//! must not repeat and for spreading retries; not for secrets.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// 64 random bits, `salt` hashed under a freshly drawn key.
pub fn random_u64(salt: u64) -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(salt);
    hasher.finish()
}
