//! Konbini's pure domain: money, payment codes, ledger rules and small encodings.
//!
//! Nothing in this crate performs IO, reads the clock or draws randomness: callers pass
//! `now_ms`, keys and random bytes in, so every rule here is testable without sleeping.
#![forbid(unsafe_code)]

pub mod audit;
pub mod encoding;
pub mod ledger;
pub mod money;
pub mod password;
pub mod paycode;
pub mod recovery;
pub mod risk;
pub mod totp;

pub use money::{Amount, Currency, MoneyError};
