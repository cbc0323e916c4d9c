//! Secrets: random tokens from the OS CSPRNG, their hashes, and keys derived from the
//! server's master secret. Tokens are stored only as SHA-256 hashes; a high-entropy token
//! needs no slow hash, and looking it up by hash keeps comparison out of our code entirely.

use konbini_core::encoding::hex;
use konbini_core::paycode::hmac_sha256;
use sha2::{Digest, Sha256};
use std::fmt;

/// `n` random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // getrandom only fails when the OS has no entropy source at all; there is no safe way
    // to continue issuing secrets then.
    if let Err(e) = getrandom::fill(&mut b) {
        panic!("the operating system's random number generator failed: {e}");
    }
    b
}

/// A new opaque identifier such as `pay_019ab3…`.
///
/// The first 6 bytes are the wall-clock time in milliseconds, so new rows land at the right
/// edge of each primary-key B-tree instead of at random pages: far fewer pages dirtied (and
/// written to the WAL) per transaction. The 80 random bits that follow keep ids unguessable
/// and unique across nodes. Ids are identifiers, not secrets.
pub fn new_id(prefix: &str) -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut b = [0u8; 16];
    b[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    b[6..].copy_from_slice(&random_bytes::<10>());
    format!("{prefix}_{}", hex(&b))
}

/// A new bearer secret such as `ks_…` (256 random bits).
pub fn new_token(prefix: &str) -> String {
    format!("{prefix}_{}", hex(&random_bytes::<32>()))
}

/// SHA-256 of a token, the only form in which tokens are stored.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// The shape of a one-time code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeForm {
    Digits,
    Link,
}

/// The server's master secret, from which per-purpose keys are derived. Redacted in Debug.
#[derive(Clone)]
pub struct MasterSecret(Vec<u8>);

impl fmt::Debug for MasterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterSecret(<redacted>)")
    }
}

impl MasterSecret {
    /// At least 32 bytes.
    pub fn new(bytes: Vec<u8>) -> Result<MasterSecret, String> {
        if bytes.len() < 32 {
            return Err("the secret key must be at least 32 bytes (64 hex characters)".into());
        }
        Ok(MasterSecret(bytes))
    }
    /// A key for one purpose, independent of every other purpose's key.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        hmac_sha256(&self.0, &[b"konbini/derive/v1/", purpose.as_bytes()])
    }
    /// The 32-byte payment-code key of a device slot (see docs/payment-codes.md).
    pub fn paycode_key(&self, slot: u32, generation: u32) -> [u8; 32] {
        konbini_core::paycode::derive_device_key(&self.0, slot, generation)
    }
    /// The TOTP secret of a staff member: derived, never stored; re-enrolment bumps
    /// `generation`.
    pub fn staff_totp_secret(&self, staff_id: &str, generation: u32) -> [u8; 20] {
        let full = hmac_sha256(
            &self.derive("staff-totp"),
            &[staff_id.as_bytes(), &generation.to_be_bytes()],
        );
        let mut out = [0u8; 20];
        out.copy_from_slice(&full[..20]);
        out
    }

    /// The TOTP secret of a customer, derived like the staff one.
    pub fn customer_totp_secret(&self, customer_id: &str, generation: i64) -> [u8; 20] {
        let full = hmac_sha256(
            &self.derive("customer-totp"),
            &[customer_id.as_bytes(), &generation.to_be_bytes()],
        );
        let mut out = [0u8; 20];
        out.copy_from_slice(&full[..20]);
        out
    }

    /// The one-time code of verification `id`: an HMAC of the (random) id under a derived
    /// key, so the outbox event that delivers it needs to carry only the id, and the database
    /// stores only the code's hash. `Form::Digits` is what a person types (6 digits, the
    /// attempts are limited); `Form::Link` is a 128-bit token for links in email.
    pub fn one_time_code(&self, id: &str, form: CodeForm) -> String {
        let mac = hmac_sha256(&self.derive("one-time-code"), &[id.as_bytes()]);
        match form {
            CodeForm::Digits => {
                let n = u64::from_be_bytes([
                    mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], mac[6], mac[7],
                ]);
                format!("{:06}", n % 1_000_000)
            }
            CodeForm::Link => konbini_core::encoding::base32(&mac[..16]).to_ascii_lowercase(),
        }
    }

    /// The keyed fingerprint of a card number: equal for equal numbers, useless without the key.
    pub fn card_fingerprint(&self, digits: &str) -> Vec<u8> {
        hmac_sha256(&self.derive("card-fingerprint"), &[digits.as_bytes()]).to_vec()
    }

    /// The keyed fingerprint of an app installation id (what the phone sends to say "this is
    /// the same app on the same phone"): equal for equal ids, useless without the key.
    pub fn installation_fingerprint(&self, installation_id: &str) -> Vec<u8> {
        hmac_sha256(
            &self.derive("installation-fingerprint"),
            &[installation_id.as_bytes()],
        )
        .to_vec()
    }
}
