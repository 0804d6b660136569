//! Redis sink.
