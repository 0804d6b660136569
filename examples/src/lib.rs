//! Runnable examples of Factlog live beside this crate: `cargo run -p factlog-examples --example quickstart`.
