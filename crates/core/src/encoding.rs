//! Small encodings used for tokens and keys.

/// Lower-case hexadecimal of `bytes`.
///
/// ```
/// assert_eq!(konbini_core::encoding::hex(&[0x0f, 0xa0]), "0fa0");
/// ```
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0x0f) as usize] as char);
    }
    s
}

/// Parses lower- or upper-case hexadecimal; `None` on odd length or a non-hex character.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    b.chunks(2)
        .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
}

/// Compares two byte strings in time that depends only on their lengths, not their contents.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    // black_box keeps the optimizer from turning the loop into an early exit.
    std::hint::black_box(diff) == 0
}

/// Appends `v` zigzag-encoded as LEB128: the sign in the low bit, then seven bits a byte, so
/// a small number, positive or negative, takes one byte (packed journal lines and counters).
///
/// ```
/// let mut out = Vec::new();
/// konbini_core::encoding::put_zigzag(&mut out, -1);
/// konbini_core::encoding::put_zigzag(&mut out, 300);
/// assert_eq!(out, [1, 0xd8, 0x04]);
/// ```
pub fn put_zigzag(out: &mut Vec<u8>, v: i64) {
    let mut z = zigzag(v);
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// `v` with its sign in the low bit: small magnitudes, positive or negative, stay small.
fn zigzag(v: i64) -> u64 {
    (v.wrapping_shl(1) ^ (v >> 63)) as u64
}

/// Writes `v` as [`put_zigzag`] does into `buf` at `at`; returns where the next value goes.
/// Values that do not fit are cut short: give `buf` ten bytes a value (the longest form).
/// Faster than [`put_zigzag`] where many values are written at once (the position stays in
/// a register instead of the vector's length in memory).
///
/// ```
/// let mut buf = [0u8; 20];
/// let n = konbini_core::encoding::put_zigzag_at(&mut buf, 0, -1);
/// let n = konbini_core::encoding::put_zigzag_at(&mut buf, n, 300);
/// assert_eq!(&buf[..n], [1, 0xd8, 0x04]);
/// ```
pub fn put_zigzag_at(buf: &mut [u8], mut at: usize, v: i64) -> usize {
    let mut z = zigzag(v);
    while z >= 0x80 {
        if let Some(b) = buf.get_mut(at) {
            *b = (z as u8) | 0x80;
        }
        at += 1;
        z >>= 7;
    }
    if let Some(b) = buf.get_mut(at) {
        *b = z as u8;
    }
    at + 1
}

/// Reads one value written by [`put_zigzag`] off the front of `rest`. Refuses a truncated
/// value and one beyond 64 bits.
pub fn take_zigzag(rest: &mut &[u8]) -> Result<i64, &'static str> {
    let mut z: u64 = 0;
    let mut shift = 0u32;
    loop {
        let Some((&byte, after)) = rest.split_first() else {
            return Err("truncated");
        };
        *rest = after;
        let bits = u64::from(byte & 0x7f);
        if shift > 63 || (bits << shift) >> shift != bits {
            return Err("a value beyond 64 bits");
        }
        z |= bits << shift;
        if byte & 0x80 == 0 {
            return Ok(((z >> 1) as i64) ^ -((z & 1) as i64));
        }
        shift += 7;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn hex_round_trip() {
        let v: Vec<u8> = (0..=255).collect();
        assert_eq!(unhex(&hex(&v)), Some(v));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn zigzag_round_trips_and_refuses_damage() {
        let values = [
            0,
            1,
            -1,
            63,
            -64,
            64,
            300,
            -300,
            i64::MAX,
            i64::MIN,
            1 << 40,
        ];
        let mut out = Vec::new();
        for v in values {
            put_zigzag(&mut out, v);
        }
        let mut rest = out.as_slice();
        for v in values {
            assert_eq!(take_zigzag(&mut rest), Ok(v));
        }
        assert!(rest.is_empty());
        assert_eq!(take_zigzag(&mut &[0x80u8][..]), Err("truncated"));
        assert_eq!(
            take_zigzag(&mut &[0xffu8; 11][..]),
            Err("a value beyond 64 bits")
        );
    }
}

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// RFC 4648 base32 without padding (the form authenticator apps take in `otpauth://` URIs).
///
/// ```
/// assert_eq!(konbini_core::encoding::base32(b"foobar"), "MZXW6YTBOI");
/// ```
pub fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(BASE32[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(BASE32[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// Decodes RFC 4648 base32 (case-insensitive, padding and spaces ignored); `None` on any
/// other character.
pub fn unbase32(s: &str) -> Option<Vec<u8>> {
    unpack_bits(s, 5, |c| {
        BASE32
            .iter()
            .position(|x| *x == c.to_ascii_uppercase())
            .map(|v| v as u32)
    })
}

/// Decodes RFC 4648 base64 (the standard alphabet; padding and spaces ignored); `None` on
/// any other character.
pub fn unbase64(s: &str) -> Option<Vec<u8>> {
    unpack_bits(s, 6, |c| {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    })
}

/// Joins the `width`-bit values of the characters of `s` (padding `=` and spaces skipped)
/// into bytes; leftover bits at the end are dropped, as RFC 4648 decoding does.
fn unpack_bits(s: &str, width: u32, value: impl Fn(u8) -> Option<u32>) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * width as usize / 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|c| *c != b'=' && *c != b' ') {
        buffer = (buffer << width) | value(c)?;
        bits += width;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
        buffer &= (1 << bits) - 1;
    }
    Some(out)
}

#[cfg(test)]
mod base32_tests {
    use super::*;

    #[test]
    fn rfc4648_base64_vectors() {
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(unbase64(enc).as_deref(), Some(raw.as_bytes()), "{enc}");
        }
        assert_eq!(
            unbase64("wqU1LDAwMA==").as_deref(),
            Some("¥5,000".as_bytes())
        );
        assert_eq!(unbase64("Zm9v!"), None);
    }

    #[test]
    fn rfc4648_vectors() {
        for (raw, enc) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(base32(raw.as_bytes()), enc);
            assert_eq!(unbase32(enc).as_deref(), Some(raw.as_bytes()));
            assert_eq!(
                unbase32(&enc.to_lowercase()).as_deref(),
                Some(raw.as_bytes())
            );
        }
        assert_eq!(unbase32("MZ1"), None);
    }
}
