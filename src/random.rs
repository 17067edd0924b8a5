//! Random bits through the standard library's `RandomState`: each thread draws its
//! keys from the operating system's randomness once, and every `RandomState` made
//! after that on the thread takes the previous keys with the first one incremented.
//! Hashing under them gives bits that differ from call to call and from process to
//! process: enough for tokens that must not repeat and for spreading retries; not
//! for secrets.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// 64 random bits: `salt` hashed under the next `RandomState`'s keys.
pub fn random_u64(salt: u64) -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(salt);
    hasher.finish()
}

/// A random fraction in `[0, 1)`: the top 53 bits, exactly representable.
pub fn random_fraction() -> f64 {
    (random_u64(0) >> 11) as f64 / (1u64 << 53) as f64
}

/// `ceiling` scaled into `[ceiling / 2, ceiling]` by `fraction` (in `[0, 1)`): a
/// wait spread so that clients or workers that failed together do not all retry at
/// the same instant, and never longer than `ceiling`.
pub fn jitter(ceiling: Duration, fraction: f64) -> Duration {
    let half = ceiling / 2;
    let spread = ceiling - half;
    let extra = Duration::try_from_secs_f64(spread.as_secs_f64() * fraction.clamp(0.0, 1.0))
        .unwrap_or(spread);
    half.saturating_add(extra).min(ceiling)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jittered_wait_is_between_half_and_all_of_its_ceiling() {
        let ceiling = Duration::from_millis(400);
        assert_eq!(jitter(ceiling, 0.0), Duration::from_millis(200));
        assert_eq!(jitter(ceiling, 0.5), Duration::from_millis(300));
        assert!(jitter(ceiling, 0.999_999) <= ceiling);
        assert_eq!(jitter(Duration::ZERO, 0.7), Duration::ZERO);
        assert_eq!(jitter(Duration::MAX, 1.0), Duration::MAX);
        assert_eq!(jitter(ceiling, 2.0), ceiling);
        // Drawn for real: in range, and spread over it (500 draws all in one half
        // has a chance of 2^-499).
        let fractions: Vec<f64> = (0..500).map(|_| random_fraction()).collect();
        assert!(fractions.iter().all(|f| (0.0..1.0).contains(f)));
        assert!(fractions.iter().any(|f| *f < 0.5) && fractions.iter().any(|f| *f > 0.5));
    }
}
