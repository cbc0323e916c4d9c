//! Password rules (NIST SP 800-63B §5.1.1.2): length only, no composition rules, and a check
//! against the commonest leaked passwords, shipped with the product (`data/`), offline.

use std::collections::HashSet;
use std::sync::LazyLock;

/// Shortest accepted password, in characters.
pub const MIN_CHARS: usize = 12;
/// Longest accepted password, in characters (long enough for any passphrase, short enough to
/// keep hashing cost bounded).
pub const MAX_CHARS: usize = 128;

static COMMON: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("../data/common-passwords.txt")
        .lines()
        .filter(|l| !l.is_empty())
        .collect()
});

/// How many passwords the blocklist holds.
pub fn blocklist_len() -> usize {
    COMMON.len()
}

/// Why a password was refused. The messages are safe to show: they never echo the password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PasswordProblem {
    #[error("use at least 12 characters")]
    TooShort,
    #[error("use at most 128 characters")]
    TooLong,
    #[error("this password is too common or has appeared in data breaches; choose another")]
    Common,
    #[error("the password must not contain your email address or the service's name")]
    Contextual,
}

const SEQUENCES: [&str; 4] = [
    "0123456789012345678901234567890123456789",
    "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz",
    "qwertyuiopasdfghjklzxcvbnmqwertyuiopasdfghjklzxcvbnm",
    "9876543210987654321098765432109876543210",
];

/// Checks a new password. `email` (if known) supplies context words that must not appear.
///
/// ```
/// use konbini_core::password::{check, PasswordProblem};
/// assert_eq!(check("password1234", None), Err(PasswordProblem::Common));
/// assert!(check("tall lanterns over a quiet river", None).is_ok());
/// ```
pub fn check(password: &str, email: Option<&str>) -> Result<(), PasswordProblem> {
    let n = password.chars().count();
    if n < MIN_CHARS {
        return Err(PasswordProblem::TooShort);
    }
    if n > MAX_CHARS {
        return Err(PasswordProblem::TooLong);
    }
    let lower = password.to_lowercase();
    let squeezed: String = lower.chars().filter(|c| !c.is_whitespace()).collect();
    // The password itself, or a common one with digits or symbols stuck on the end
    // ("password123456", "iloveyou!!!!!").
    let stem = squeezed.trim_end_matches(|c: char| c.is_ascii_digit() || c.is_ascii_punctuation());
    if COMMON.contains(lower.as_str())
        || COMMON.contains(squeezed.as_str())
        || (stem.chars().count() >= 4 && COMMON.contains(stem))
    {
        return Err(PasswordProblem::Common);
    }
    // One character repeated, or a run along the digits, the alphabet or the keyboard.
    let mut chars = squeezed.chars();
    if let Some(first) = chars.next()
        && chars.all(|c| c == first)
    {
        return Err(PasswordProblem::Common);
    }
    if SEQUENCES.iter().any(|s| s.contains(squeezed.as_str())) {
        return Err(PasswordProblem::Common);
    }
    // A common password repeated ("qwertyqwerty").
    for len in 3..=squeezed.len() / 2 {
        if squeezed.len().is_multiple_of(len)
            && let Some(unit) = squeezed.get(..len)
            && squeezed
                .as_bytes()
                .chunks(len)
                .all(|c| c == unit.as_bytes())
        {
            return Err(PasswordProblem::Common);
        }
    }
    let mut context = vec!["konbini".to_string()];
    if let Some(e) = email {
        let local = e.split('@').next().unwrap_or("").to_lowercase();
        if local.chars().count() >= 4 {
            context.push(local);
        }
    }
    if context.iter().any(|w| squeezed.contains(w.as_str())) {
        return Err(PasswordProblem::Contextual);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_loaded() {
        assert_eq!(blocklist_len(), 30_000);
    }

    #[test]
    fn refuses_the_predictable() {
        for p in [
            "password1234",
            "Password123456!",
            "123456789012",
            "qwertyuiopas",
            "aaaaaaaaaaaa",
            "abcdefghijklmn",
            "iloveyou!!!!!!",
            "qwertyqwerty",
            "1q2w3e4r5t6y",
            "dragondragon",
            "P A S S W O R D 1 2 3",
        ] {
            assert_eq!(check(p, None), Err(PasswordProblem::Common), "{p}");
        }
        assert_eq!(
            check("hanako-secret-2026", Some("hanako@example.com")),
            Err(PasswordProblem::Contextual)
        );
        assert_eq!(
            check("my konbini wallet", None),
            Err(PasswordProblem::Contextual)
        );
        assert_eq!(check("short", None), Err(PasswordProblem::TooShort));
        assert_eq!(check(&"x".repeat(129), None), Err(PasswordProblem::TooLong));
    }

    #[test]
    fn accepts_passphrases_without_composition_rules() {
        for p in [
            "correct horse battery staple",
            "tall lanterns over a quiet river",
            "すしとラーメンが大好きです",
            "zq8!Lm2#pX0@",
            "a long sentence about the morning train to Umeda, the rain on the windows, and onigiri for lunch at noon",
        ] {
            assert_eq!(check(p, Some("hanako@example.com")), Ok(()), "{p}");
        }
    }
}
