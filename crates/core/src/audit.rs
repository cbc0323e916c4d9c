//! The audit log's hash chain: each record's hash covers the previous record's hash and every
//! field of its own, so editing, deleting or reordering any record breaks every hash after it.

use sha2::{Digest, Sha256};

/// The `prev_hash` of the first record.
pub const GENESIS: [u8; 32] = [0u8; 32];

/// The fields of one audit record that the chain protects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    pub seq: i64,
    pub at_ms: i64,
    /// Who acted: a customer id, a staff id, `system` or `cli`.
    pub actor: &'a str,
    /// What happened, such as `device.bound`.
    pub action: &'a str,
    /// What it happened to (an id).
    pub subject: &'a str,
    /// Details as JSON text (never secrets or personal data).
    pub details: &'a str,
}

/// `SHA-256(prev_hash || seq || at_ms || len(actor) || actor || ... || len(details) || details)`,
/// integers big-endian and every string length-prefixed, so no two records encode alike.
///
/// ```
/// use konbini_core::audit::{chain_hash, Record, GENESIS};
/// let r = Record { seq: 1, at_ms: 0, actor: "cli", action: "store.added", subject: "ST1", details: "{}" };
/// assert_ne!(chain_hash(&GENESIS, &r), chain_hash(&GENESIS, &Record { seq: 2, ..r.clone() }));
/// ```
pub fn chain_hash(prev_hash: &[u8], r: &Record<'_>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev_hash);
    h.update(r.seq.to_be_bytes());
    h.update(r.at_ms.to_be_bytes());
    for field in [r.actor, r.action, r.subject, r.details] {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field.as_bytes());
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_is_covered() {
        let r = Record {
            seq: 7,
            at_ms: 9,
            actor: "a",
            action: "b",
            subject: "c",
            details: "d",
        };
        let base = chain_hash(&GENESIS, &r);
        let variants = [
            Record {
                seq: 8,
                ..r.clone()
            },
            Record {
                at_ms: 10,
                ..r.clone()
            },
            Record {
                actor: "x",
                ..r.clone()
            },
            Record {
                action: "x",
                ..r.clone()
            },
            Record {
                subject: "x",
                ..r.clone()
            },
            Record {
                details: "x",
                ..r.clone()
            },
            // Moving a byte between fields changes the hash too (length prefixes).
            Record {
                actor: "ab",
                action: "",
                ..r.clone()
            },
        ];
        for v in variants {
            assert_ne!(chain_hash(&GENESIS, &v), base, "{v:?}");
        }
        assert_ne!(chain_hash(&[1u8; 32], &r), base);
    }
}
