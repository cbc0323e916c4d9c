//! One-time recovery codes: 80 random bits each (≥ 64 required), shown once as
//! `ABCD-EFGH-IJKL-MNOP` in base32, stored only as a hash of their canonical form.

/// Random bytes per code.
pub const BYTES: usize = 10;
/// Codes issued at once.
pub const COUNT: usize = 10;

/// Formats random bytes as a code for display.
///
/// ```
/// assert_eq!(konbini_core::recovery::format(&[0u8; 10]), "AAAA-AAAA-AAAA-AAAA");
/// ```
pub fn format(bytes: &[u8; BYTES]) -> String {
    let s = crate::encoding::base32(bytes);
    s.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("-")
}

/// The canonical form of what a customer typed: dashes and spaces dropped, upper case, and
/// exactly 16 base32 characters; `None` for anything else.
pub fn canonical(input: &str) -> Option<String> {
    let s: String = input
        .chars()
        .filter(|c| *c != '-' && !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let ok = s.len() == 16 && crate::encoding::unbase32(&s).is_some_and(|b| b.len() == BYTES);
    ok.then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_typing_slack() {
        let bytes = [0xde, 0xad, 0xbe, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab];
        let shown = format(&bytes);
        assert_eq!(shown.len(), 19);
        let canon = canonical(&shown).expect("valid");
        assert_eq!(
            canonical(&shown.to_lowercase().replace('-', " ")),
            Some(canon.clone())
        );
        assert_eq!(
            crate::encoding::unbase32(&canon).as_deref(),
            Some(&bytes[..])
        );
        assert_eq!(canonical("AAAA-AAAA-AAAA-AAA"), None);
        assert_eq!(canonical("AAAA-AAAA-AAAA-AAA1"), None);
        assert_eq!(canonical("ＡＡＡＡ-AAAA-AAAA-AAAA"), None);
    }
}
