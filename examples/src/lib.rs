//! Runnable examples of Factlog, and the domains and services they run.
//!
//! - `cargo run --release -p factlog-examples --example quickstart`: the store API in one file.
//! - `cargo run --release --example bank -- --listen 127.0.0.1:8080 --data-dir DIR`: the bank
//!   service ([`bank`] domain, [`bank_service`] HTTP API).
//! - `cargo run --release --example orders -- --listen 127.0.0.1:8081 --data-dir DIR`: the
//!   order service ([`orders`] domain, [`orders_service`] HTTP API).
//!
//! - [`bank_balances`]: the bank's balances as a projection into SQLite.
//!
//! The services' contracts are documented in `docs/examples.md`.

pub mod bank;
pub mod bank_balances;
pub mod bank_service;
pub mod orders;
pub mod orders_service;
pub mod service;
