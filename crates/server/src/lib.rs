#![forbid(unsafe_code)]
pub mod processor;
