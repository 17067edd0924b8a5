//! What the entry points (tower, axum, actix-web) share: reading a body with the
//! verifier's limits, the extractors' rejection, and the type-erased endpoint the
//! tower service holds.

pub(crate) mod body;
#[cfg(any(feature = "axum", feature = "actix"))]
pub(crate) mod rejection;

#[cfg(feature = "tower")]
mod endpoint;

#[cfg(feature = "tower")]
pub(crate) use endpoint::Endpoint;

use crate::error::ErrorKind;
use crate::receiver::Outcome;

/// Whether the connection must not be reused after this answer: a body refused
/// before it was read to its end leaves unread bytes on it.
pub(crate) fn closes_connection(outcome: Outcome) -> bool {
    matches!(
        outcome,
        Outcome::Rejected(ErrorKind::BodyTooLarge | ErrorKind::BodyTimeout | ErrorKind::BodyRead)
    )
}
