//! One-time payment codes: the 20-digit number the wallet shows as a barcode and QR code.
//!
//! The full specification, with test vectors, is `docs/payment-codes.md`. In short:
//!
//! ```text
//! position  0-1   2        3-10          11          12-18         19
//!           brand version  device slot   sub-index   one-time      Luhn check
//!           "88"  "1"      8 digits      d (0-9)     value (7)     digit
//! ```
//!
//! * The *slot* is an opaque number allocated at device binding; it carries no account data.
//! * The *step* is `floor(unix_seconds / 30)`. A code is accepted during its own step and the
//!   next one only, so it lives at most 60 seconds.
//! * The *sub-index* `d` lets one device show up to 10 distinct codes within one step (a new
//!   code after each use). The pair `(step, d)` forms the counter `step * 10 + d`; the server
//!   accepts a code only if its counter is above the last one used on that slot, which makes
//!   every code one-time and kills older unused codes once a newer one is used.
//! * The one-time value is HOTP-style dynamic truncation (RFC 4226 §5.3) of
//!   `HMAC-SHA256(device_key, "KPC1" || slot_u32_be || step_u64_be || d_u8)`, modulo 10^7.
//! * The check digit is Luhn over the first 19 digits, so a mistyped code is refused before
//!   any lookup.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::fmt;

/// Length of a payment code in digits.
pub const CODE_LEN: usize = 20;
/// The brand prefix that identifies a Konbini code at the till.
pub const BRAND: &str = "88";
/// The version digit of this algorithm.
pub const VERSION: u8 = 1;
/// Length of one time step.
pub const STEP_SECONDS: i64 = 30;
/// Exclusive upper bound of slot numbers (8 digits).
pub const SLOT_LIMIT: u32 = 100_000_000;
const OTP_MODULUS: u32 = 10_000_000;

/// Why a code was refused. The variants are for logs and tests; the public API answers
/// every one of them with the same `invalid_code` so a probe learns nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("a payment code is exactly 20 ASCII digits")]
    Malformed,
    #[error("check digit mismatch")]
    CheckDigit,
    #[error("not a Konbini code of a supported version")]
    UnknownBrand,
    #[error("code expired or not yet valid")]
    Expired,
    #[error("one-time value does not match")]
    Mismatch,
}

/// A syntactically valid payment code (20 digits, right brand and version, check digit ok).
/// Whether it is genuine, fresh and unused is decided by [`verify`] and the store.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PaymentCode {
    slot: u32,
    sub_index: u8,
    otp: u32,
}

impl PaymentCode {
    /// Parses the 20-digit form. Anything but ASCII digits (spaces, full-width digits, signs)
    /// is refused.
    ///
    /// ```
    /// use konbini_core::paycode::PaymentCode;
    /// assert!(PaymentCode::parse("88100000000000000000").is_err()); // bad check digit
    /// assert!(PaymentCode::parse("８８").is_err());
    /// ```
    pub fn parse(s: &str) -> Result<PaymentCode, CodeError> {
        let b = s.as_bytes();
        if b.len() != CODE_LEN || !b.iter().all(u8::is_ascii_digit) {
            return Err(CodeError::Malformed);
        }
        let digits: Vec<u8> = b.iter().map(|c| c - b'0').collect();
        if luhn_check_digit(&digits[..CODE_LEN - 1]) != digits[CODE_LEN - 1] {
            return Err(CodeError::CheckDigit);
        }
        if &s[0..2] != BRAND || digits[2] != VERSION {
            return Err(CodeError::UnknownBrand);
        }
        let num = |r: std::ops::Range<usize>| {
            digits[r]
                .iter()
                .fold(0u32, |acc, d| acc * 10 + u32::from(*d))
        };
        Ok(PaymentCode {
            slot: num(3..11),
            sub_index: digits[11],
            otp: num(12..19),
        })
    }

    /// The opaque device slot the code was made for.
    pub fn slot(&self) -> u32 {
        self.slot
    }
    /// The index of this code within its 30-second step.
    pub fn sub_index(&self) -> u8 {
        self.sub_index
    }
}

impl fmt::Display for PaymentCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let body = format!(
            "{BRAND}{VERSION}{:08}{}{:07}",
            self.slot, self.sub_index, self.otp
        );
        let digits: Vec<u8> = body.bytes().map(|c| c - b'0').collect();
        write!(f, "{body}{}", luhn_check_digit(&digits))
    }
}

impl fmt::Debug for PaymentCode {
    // A code is a bearer credential for its lifetime: debug output shows the slot only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PaymentCode {{ slot: {}, .. }}", self.slot)
    }
}

/// The Luhn check digit for `digits` (each 0-9).
pub fn luhn_check_digit(digits: &[u8]) -> u8 {
    // Walking from the right, the digit next to the check digit is doubled.
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

/// The time step of an instant given in unix milliseconds.
pub fn step_of(now_ms: i64) -> i64 {
    now_ms.div_euclid(1000 * STEP_SECONDS)
}

/// The counter of a code: orders all codes of one slot; used to make codes one-time.
pub fn counter(step: i64, sub_index: u8) -> i64 {
    step * 10 + i64::from(sub_index)
}

/// Derives a device's 32-byte code key from the server's master secret, the slot and the
/// key generation. Nothing secret needs to be stored per device: revoking a slot is enough.
pub fn derive_device_key(master_secret: &[u8], slot: u32, generation: u32) -> [u8; 32] {
    hmac_sha256(
        master_secret,
        &[
            b"konbini/paycode-key/v1",
            &slot.to_be_bytes(),
            &generation.to_be_bytes(),
        ],
    )
}

/// HMAC-SHA256 over the concatenation of `parts`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail; the fallback keeps it total.
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return [0u8; 32],
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

fn one_time_value(key: &[u8; 32], slot: u32, step: i64, sub_index: u8) -> u32 {
    let mac = hmac_sha256(
        key,
        &[
            b"KPC1",
            &slot.to_be_bytes(),
            &(step as u64).to_be_bytes(),
            &[sub_index],
        ],
    );
    // RFC 4226 §5.3 dynamic truncation.
    let offset = usize::from(mac[31] & 0x0f);
    let bin = u32::from_be_bytes([
        mac[offset],
        mac[offset + 1],
        mac[offset + 2],
        mac[offset + 3],
    ]) & 0x7fff_ffff;
    bin % OTP_MODULUS
}

/// Makes the code of `slot` for `step` and `sub_index` (0-9). This is what a phone runs offline.
///
/// ```
/// use konbini_core::paycode::{generate, verify, PaymentCode, step_of};
/// let key = [7u8; 32];
/// let now_ms = 1_700_000_000_000;
/// let code = generate(&key, 1234, step_of(now_ms), 0);
/// let parsed = PaymentCode::parse(&code.to_string()).unwrap();
/// assert!(verify(&key, &parsed, now_ms + 10_000).is_ok());
/// ```
pub fn generate(key: &[u8; 32], slot: u32, step: i64, sub_index: u8) -> PaymentCode {
    PaymentCode {
        slot: slot % SLOT_LIMIT,
        sub_index: sub_index % 10,
        otp: one_time_value(key, slot % SLOT_LIMIT, step, sub_index % 10),
    }
}

/// Checks that `code` was made with `key` during the current or the previous step, and
/// returns its counter. One-time use is enforced by the store against the slot's last
/// used counter.
pub fn verify(key: &[u8; 32], code: &PaymentCode, now_ms: i64) -> Result<i64, CodeError> {
    let now_step = step_of(now_ms);
    for step in [now_step, now_step - 1] {
        let expected = one_time_value(key, code.slot, step, code.sub_index);
        // Compare in constant time: the value is a credential.
        if crate::encoding::constant_time_eq(&expected.to_be_bytes(), &code.otp.to_be_bytes()) {
            return Ok(counter(step, code.sub_index));
        }
    }
    Err(CodeError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: [u8; 32] = [0x42; 32];

    #[test]
    fn luhn_known_values() {
        // 7992739871 has check digit 3 (the textbook example).
        assert_eq!(luhn_check_digit(&[7, 9, 9, 2, 7, 3, 9, 8, 7, 1]), 3);
        assert_eq!(luhn_check_digit(&[0; 19]), 0);
    }

    #[test]
    fn valid_for_two_steps_only() {
        let t0 = 1_800_000_000_000i64; // a step boundary
        assert_eq!(t0 % 30_000, 0);
        let code = generate(&KEY, 42, step_of(t0), 3);
        assert_eq!(verify(&KEY, &code, t0), Ok(counter(step_of(t0), 3)));
        assert!(verify(&KEY, &code, t0 + 59_999).is_ok());
        assert_eq!(verify(&KEY, &code, t0 + 60_000), Err(CodeError::Mismatch));
        assert_eq!(verify(&KEY, &code, t0 - 1), Err(CodeError::Mismatch));
    }

    #[test]
    fn wrong_key_or_slot_is_refused() {
        let now = 1_800_000_012_345;
        let code = generate(&KEY, 42, step_of(now), 0);
        assert_eq!(verify(&[0x43; 32], &code, now), Err(CodeError::Mismatch));
        let other_slot = PaymentCode { slot: 43, ..code };
        assert_eq!(verify(&KEY, &other_slot, now), Err(CodeError::Mismatch));
    }

    #[test]
    fn parse_rejects_garbage() {
        let good = generate(&KEY, 99_999_999, 5, 9).to_string();
        assert_eq!(good.len(), 20);
        assert!(PaymentCode::parse(&good).is_ok());
        assert_eq!(PaymentCode::parse(&good[..19]), Err(CodeError::Malformed));
        assert_eq!(
            PaymentCode::parse(&format!("{good}0")),
            Err(CodeError::Malformed)
        );
        assert_eq!(
            PaymentCode::parse(&format!(" {}", &good[1..])),
            Err(CodeError::Malformed)
        );
        assert_eq!(PaymentCode::parse(""), Err(CodeError::Malformed));
        // A different brand with a correct check digit.
        let mut d: Vec<u8> = "77100000001000000000".bytes().map(|c| c - b'0').collect();
        d.truncate(19);
        let other = format!("{}{}", &"77100000001000000000"[..19], luhn_check_digit(&d));
        assert_eq!(PaymentCode::parse(&other), Err(CodeError::UnknownBrand));
    }

    #[test]
    fn debug_hides_the_code() {
        let code = generate(&KEY, 7, 1, 0);
        assert!(!format!("{code:?}").contains(&code.to_string()[12..19]));
    }

    proptest! {
        #[test]
        fn round_trip(slot in 0u32..SLOT_LIMIT, step in 0i64..100_000_000, d in 0u8..10, key in proptest::array::uniform32(any::<u8>())) {
            let code = generate(&key, slot, step, d);
            let parsed = PaymentCode::parse(&code.to_string()).unwrap();
            prop_assert_eq!(parsed, code);
            prop_assert_eq!(verify(&key, &parsed, step * 30_000 + 1), Ok(counter(step, d)));
        }

        #[test]
        fn any_single_digit_typo_is_caught(slot in 0u32..SLOT_LIMIT, step in 0i64..100_000_000, pos in 0usize..20, delta in 1u8..10) {
            let s = generate(&KEY, slot, step, 1).to_string();
            let mut b = s.into_bytes();
            b[pos] = b'0' + (b[pos] - b'0' + delta) % 10;
            let typo = String::from_utf8(b).unwrap();
            prop_assert!(PaymentCode::parse(&typo).is_err());
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,40}") {
            let _ = PaymentCode::parse(&s);
        }
    }
}
