//! Time-based one-time passwords (RFC 6238 over RFC 4226), as authenticator apps make them:
//! HMAC-SHA-1, 30-second steps, 6 digits. Replay protection is the caller's: store the step
//! of the last accepted code and accept only later steps ([`verify`] returns the step).

use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

/// Seconds per step.
pub const STEP_SECONDS: i64 = 30;
/// Digits per code.
pub const DIGITS: u32 = 6;

/// The HOTP value of `counter` with `digits` digits (RFC 4226 §5.3).
pub fn hotp(secret: &[u8], counter: u64, digits: u32) -> u32 {
    let mut mac = match <Hmac<Sha1> as KeyInit>::new_from_slice(secret) {
        Ok(m) => m,
        // HMAC takes keys of any length; this arm cannot run.
        Err(_) => return 0,
    };
    mac.update(&counter.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let offset = usize::from(h[19] & 0x0f);
    let bin =
        u32::from_be_bytes([h[offset], h[offset + 1], h[offset + 2], h[offset + 3]]) & 0x7fff_ffff;
    bin % 10u32.pow(digits)
}

/// The code shown at `unix_ms`, zero-padded.
pub fn code_at(secret: &[u8], unix_ms: i64) -> String {
    let step = unix_ms.div_euclid(STEP_SECONDS * 1000);
    format!(
        "{:0width$}",
        hotp(secret, step as u64, DIGITS),
        width = DIGITS as usize
    )
}

/// Checks `code` against the current step and one step either side (clock drift), skipping
/// steps at or below `last_used_step`. Returns the matching step, to be stored as the new
/// `last_used_step` so the same code is never accepted twice.
pub fn verify(secret: &[u8], code: &str, unix_ms: i64, last_used_step: i64) -> Option<i64> {
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = unix_ms.div_euclid(STEP_SECONDS * 1000);
    let mut found = None;
    // Compare every candidate in constant time; do not stop early.
    for step in [now - 1, now, now + 1] {
        if step <= last_used_step || step < 0 {
            continue;
        }
        let expected = format!(
            "{:0width$}",
            hotp(secret, step as u64, DIGITS),
            width = DIGITS as usize
        );
        if crate::encoding::constant_time_eq(expected.as_bytes(), code.as_bytes())
            && found.is_none()
        {
            found = Some(step);
        }
    }
    found
}

/// The `otpauth://` URI an authenticator app scans (as a QR code) to enrol `secret`.
pub fn provisioning_uri(secret: &[u8], account: &str, issuer: &str) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'@' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}",
        enc(issuer),
        enc(account),
        crate::encoding::base32(secret),
        enc(issuer)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B, SHA-1, 8 digits.
    #[test]
    fn rfc6238_vectors() {
        let secret = b"12345678901234567890";
        for (t, want) in [
            (59i64, 94287082u32),
            (1_111_111_109, 7081804),
            (1_111_111_111, 14050471),
            (1_234_567_890, 89005924),
            (2_000_000_000, 69279037),
            (20_000_000_000, 65353130),
        ] {
            assert_eq!(hotp(secret, (t / 30) as u64, 8), want, "t={t}");
            assert_eq!(
                code_at(secret, t * 1000),
                format!("{:06}", want % 1_000_000),
                "t={t}"
            );
        }
    }

    /// RFC 4226 Appendix D.
    #[test]
    fn rfc4226_vectors() {
        let want = [
            755224, 287082, 359152, 969429, 338314, 254676, 287922, 162583, 399871, 520489,
        ];
        for (i, w) in want.iter().enumerate() {
            assert_eq!(hotp(b"12345678901234567890", i as u64, 6), *w);
        }
    }

    #[test]
    fn replay_and_drift() {
        let s = b"12345678901234567890";
        let t = 1_111_111_111_000i64;
        let code = code_at(s, t);
        let step = verify(s, &code, t, 0).expect("valid");
        assert_eq!(verify(s, &code, t, step), None, "the same code twice");
        assert!(
            verify(s, &code, t + 30_000, 0).is_some(),
            "one step of drift"
        );
        assert_eq!(verify(s, &code, t + 90_000, 0), None, "three steps late");
        assert_eq!(verify(s, "12345", t, 0), None);
        assert_eq!(verify(s, "１２３４５６", t, 0), None);
    }

    #[test]
    fn uri() {
        let u = provisioning_uri(b"12345678901234567890", "hanako@example.com", "Konbini");
        assert!(u.starts_with("otpauth://totp/Konbini:hanako@example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Konbini"), "{u}");
    }
}
