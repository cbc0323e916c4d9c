//! Persistence for Konbini.
//!
//! One set of SQL statements, written once with `$1` placeholders and portable types, runs on
//! two backends: embedded SQLite (the default, [`sqlite`]) and PostgreSQL ([`postgres`]). The
//! aggregate modules ([`customers`], [`devices`], [`ledger`], ...) are the only place SQL is
//! written; they take a [`Conn`] that is always inside a transaction opened by [`Db`].
//!
//! [`Db::write`] runs a closure as one transaction and answers only after it is durably
//! committed. Business outcomes that must be kept even though they are "failures" (a declined
//! payment still spends its code) are returned as `Ok` values; an `Err` rolls everything back.
#![forbid(unsafe_code)]

pub mod audit;
pub mod customers;
mod db;
pub mod idempotency;
pub mod identity;
pub mod ledger;
pub mod migrations;
pub mod outbox;
pub mod payments;
mod postgres;
pub mod risk;
mod sqlite;
pub mod staff;
pub mod stores;
pub mod testing;
mod value;

pub use db::{Backend, Db, DbConfig};
pub use value::{Conn, Row, Value};

/// A storage failure. Domain outcomes are never expressed as a `StoreError`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness, foreign-key or check constraint refused the change.
    #[error("constraint violated: {0}")]
    Constraint(String),
    /// A transient conflict (deadlock, serialization failure, busy database); the job is rerun.
    #[error("transient conflict: {0}")]
    Retry(String),
    /// A statement found one of its own preconditions false and undid itself whole (nothing
    /// it wrote remains); the message names the precondition.
    #[error("statement undone: {0}")]
    Undone(String),
    #[error("database error: {0}")]
    Db(String),
    #[error("unexpected data: {0}")]
    Decode(String),
    #[error("invalid database url: {0}")]
    Url(String),
    /// The executor has shut down.
    #[error("database executor closed")]
    Closed,
}
