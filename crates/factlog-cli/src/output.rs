//! Where command results go: stdout, buffered, as text or as JSON.
//!
//! Results go to stdout and nothing else does: progress and warnings go to stderr, so that
//! `factlog read '$all' --json | jq` sees only events.

use std::fmt::Display;
use std::io::{BufWriter, Stdout, Write};

/// The command's result writer.
#[derive(Debug)]
pub struct Out {
    writer: BufWriter<Stdout>,
    json: bool,
}

impl Out {
    pub fn new(json: bool) -> Self {
        Self {
            writer: BufWriter::new(std::io::stdout()),
            json,
        }
    }

    /// Whether the user asked for JSON.
    pub fn json(&self) -> bool {
        self.json
    }

    /// One line of text.
    pub fn line(&mut self, text: impl Display) -> std::io::Result<()> {
        writeln!(self.writer, "{text}")
    }

    /// One JSON value on one line.
    pub fn json_line(&mut self, value: &serde_json::Value) -> std::io::Result<()> {
        writeln!(self.writer, "{value}")
    }

    /// Sends what is buffered, so that a reader following a long output sees it page by page.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.writer.flush()
    }

    pub fn finish(mut self) -> std::io::Result<()> {
        self.writer.flush()
    }
}
