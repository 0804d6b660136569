//! A parser of Server-Sent Events (`text/event-stream`), fed with body chunks as they arrive.
//!
//! It follows the event-stream interpretation of the HTML standard: a line ends with CRLF, LF or
//! CR (also when the CR and the LF arrive in different chunks); a line starting with `:` is a
//! comment (the server's keep-alive); the `data:` lines of one event are joined with newlines; a
//! blank line dispatches the event, unless it has no data; `id:` sets the last event id, which
//! stays until the next `id:`. A frame cut off by the end of the body is never dispatched: the
//! caller drops the parser and resumes after the last event it got.
//!
//! Chunk boundaries fall anywhere, so nothing here depends on them: the same bytes give the same
//! items however they are split.

use std::collections::VecDeque;

/// The most bytes one frame (an event's lines, or one comment) may take. A stored event is at
/// most 1 MiB of payload (`event_size_bytes_max`), and JSON escaping can make it several times
/// longer on the wire; anything beyond this is not a Factlog event, and buffering it without
/// bound would let a broken peer exhaust memory.
pub(crate) const FRAME_BYTES_MAX: usize = 64 * 1024 * 1024;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    /// The `event:` field; `message` when the frame has none.
    pub event: String,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
    /// The last event id of the stream when this frame was dispatched.
    pub id: Option<String>,
}

/// What the parser found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item {
    Frame(Frame),
    /// A comment line: the peer is alive, and nothing else.
    Comment,
}

/// A frame over [`FRAME_BYTES_MAX`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a Server-Sent Events frame is over {FRAME_BYTES_MAX} bytes (at least {bytes}); no Factlog \
     event is that large, so the peer is not a Factlog server or is broken"
)]
pub(crate) struct FrameTooLarge {
    pub bytes: usize,
}

/// The state between chunks: the unfinished line and the fields of the unfinished frame.
#[derive(Debug, Default)]
pub(crate) struct Parser {
    /// The bytes of the line not yet ended.
    line: Vec<u8>,
    /// The last chunk ended with CR: an LF starting the next chunk ends no second line.
    after_cr: bool,
    event: Option<String>,
    /// Each `data:` line followed by `\n`, as the standard builds its data buffer.
    data: String,
    last_id: Option<String>,
    /// Bytes of the lines of the frame so far, to enforce [`FRAME_BYTES_MAX`].
    frame_bytes: usize,
}

impl Parser {
    /// Parses `chunk`, appending every complete item to `out`.
    pub(crate) fn push(
        &mut self,
        chunk: &[u8],
        out: &mut VecDeque<Item>,
    ) -> Result<(), FrameTooLarge> {
        let mut rest = chunk;
        if self.after_cr && !rest.is_empty() {
            self.after_cr = false;
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
        }
        while let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            let (head, tail) = rest.split_at(end);
            if self.line.is_empty() {
                self.line_ended(head, out)?;
            } else {
                self.check_size(head.len())?;
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(head);
                self.line_ended(&line, out)?;
                line.clear();
                // Keep the allocation for the next long line.
                self.line = line;
            }
            let cr = tail[0] == b'\r';
            rest = &tail[1..];
            if cr {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
        }
        self.check_size(rest.len())?;
        self.line.extend_from_slice(rest);
        Ok(())
    }

    fn check_size(&self, more: usize) -> Result<(), FrameTooLarge> {
        let bytes = self.frame_bytes + self.line.len() + more;
        if bytes > FRAME_BYTES_MAX {
            return Err(FrameTooLarge { bytes });
        }
        Ok(())
    }

    /// Interprets one complete line (without its line ending).
    fn line_ended(&mut self, line: &[u8], out: &mut VecDeque<Item>) -> Result<(), FrameTooLarge> {
        if line.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        if line[0] == b':' {
            out.push_back(Item::Comment);
            return Ok(());
        }
        self.check_size(line.len())?;
        self.frame_bytes += line.len();
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        let value = String::from_utf8_lossy(value);
        match name {
            b"event" => self.event = Some(value.into_owned()),
            b"data" => {
                self.data.push_str(&value);
                self.data.push('\n');
            }
            // The standard ignores an id containing NUL.
            b"id" if !value.contains('\0') => self.last_id = Some(value.into_owned()),
            // `retry:` and unknown fields: the reconnection policy is the caller's.
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self, out: &mut VecDeque<Item>) {
        self.frame_bytes = 0;
        let event = self.event.take();
        if self.data.is_empty() {
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        data.pop(); // the newline after the last data line
        out.push_back(Item::Frame(Frame {
            event: event.unwrap_or_else(|| "message".to_owned()),
            data,
            id: self.last_id.clone(),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(event: &str, data: &str, id: Option<&str>) -> Item {
        Item::Frame(Frame {
            event: event.to_owned(),
            data: data.to_owned(),
            id: id.map(str::to_owned),
        })
    }

    fn parse_chunks(chunks: &[&[u8]]) -> Vec<Item> {
        let mut parser = Parser::default();
        let mut out = VecDeque::new();
        for chunk in chunks {
            parser.push(chunk, &mut out).unwrap();
        }
        out.into()
    }

    fn parse(text: &str) -> Vec<Item> {
        parse_chunks(&[text.as_bytes()])
    }

    /// What the server sends: events, a keep-alive, an error frame, with multi-byte UTF-8 in
    /// the data so that splits also fall inside characters.
    const STREAM: &str = "id: 7\nevent: Deposited\ndata: {\"stream\":\"konto-ü\",\"n\":1}\n\n\
                          : keep-alive\n\n\
                          id: 9\nevent: Withdrawn\ndata: {\"n\":2}\n\n\
                          event: error\ndata: {\"type\":\"x\",\"detail\":\"😀\"}\n\n";

    fn stream_items() -> Vec<Item> {
        vec![
            frame("Deposited", "{\"stream\":\"konto-ü\",\"n\":1}", Some("7")),
            Item::Comment,
            frame("Withdrawn", "{\"n\":2}", Some("9")),
            frame("error", "{\"type\":\"x\",\"detail\":\"😀\"}", Some("9")),
        ]
    }

    #[test]
    fn parses_the_servers_frames() {
        assert_eq!(parse(STREAM), stream_items());
    }

    #[test]
    fn every_split_into_two_chunks_gives_the_same_items() {
        for line_end in ["\n", "\r\n", "\r"] {
            let text = STREAM.replace('\n', line_end);
            let bytes = text.as_bytes();
            for i in 0..=bytes.len() {
                assert_eq!(
                    parse_chunks(&[&bytes[..i], &bytes[i..]]),
                    stream_items(),
                    "line end {line_end:?}, split at byte {i}"
                );
            }
        }
    }

    #[test]
    fn every_split_into_three_chunks_gives_the_same_items() {
        let text = "data: a\r\n\r\n: c\r\nid: 1\rdata: b\r\rdata:\n\n";
        let expected = vec![
            frame("message", "a", None),
            Item::Comment,
            frame("message", "b", Some("1")),
            frame("message", "", Some("1")),
        ];
        let bytes = text.as_bytes();
        for i in 0..=bytes.len() {
            for j in i..=bytes.len() {
                assert_eq!(
                    parse_chunks(&[&bytes[..i], &bytes[i..j], &bytes[j..]]),
                    expected,
                    "split at bytes {i} and {j}"
                );
            }
        }
    }

    #[test]
    fn one_byte_at_a_time_and_empty_chunks() {
        for line_end in ["\n", "\r\n", "\r"] {
            let text = STREAM.replace('\n', line_end);
            let mut chunks: Vec<&[u8]> = Vec::new();
            for i in 0..text.len() {
                chunks.push(&text.as_bytes()[i..=i]);
                chunks.push(b"");
            }
            assert_eq!(parse_chunks(&chunks), stream_items(), "{line_end:?}");
        }
    }

    #[test]
    fn crlf_is_one_line_end_and_lone_cr_and_lf_are_one_each() {
        // CR then LF in separate chunks: one line end, so one frame, not a blank line in between.
        assert_eq!(
            parse_chunks(&[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]),
            vec![frame("message", "a\nb", None)]
        );
        // LF then CR: two line ends, so the frame is dispatched.
        assert_eq!(
            parse("data: a\n\rdata: b\n\n"),
            vec![frame("message", "a", None), frame("message", "b", None)]
        );
    }

    #[test]
    fn multi_line_data_is_joined_with_newlines() {
        assert_eq!(
            parse("data: {\ndata:  \"a\": 1\ndata:\ndata: }\n\n"),
            vec![frame("message", "{\n \"a\": 1\n\n}", None)]
        );
    }

    #[test]
    fn comments_are_reported_and_do_not_touch_the_frame() {
        assert_eq!(
            parse(": hello\nevent: E\n:keep-alive\ndata: x\n: more\n\n:\n"),
            vec![
                Item::Comment,
                Item::Comment,
                Item::Comment,
                frame("E", "x", None),
                Item::Comment,
            ]
        );
    }

    #[test]
    fn fields_follow_the_standard() {
        // No space after the colon; only one space is stripped; a line without a colon is a
        // field with an empty value; unknown fields and retry are ignored.
        assert_eq!(
            parse("event:E\ndata:x\ndata:  y\nretry: 10\nfoo: bar\ndata\n\n"),
            vec![frame("E", "x\n y\n", None)]
        );
        // A frame without data is not dispatched, and its event type does not leak into the next.
        assert_eq!(
            parse("event: Lost\nid: 3\n\ndata: d\n\n"),
            vec![frame("message", "d", Some("3"))]
        );
        // The last event id stays until the next id field; an id with NUL is ignored; an empty id
        // resets it to empty.
        assert_eq!(
            parse("id: 1\ndata: a\n\ndata: b\n\nid: 2\0\ndata: c\n\nid\ndata: d\n\n"),
            vec![
                frame("message", "a", Some("1")),
                frame("message", "b", Some("1")),
                frame("message", "c", Some("1")),
                frame("message", "d", Some("")),
            ]
        );
    }

    #[test]
    fn a_frame_cut_off_is_not_dispatched() {
        assert_eq!(
            parse("data: a\n\ndata: b\n"),
            vec![frame("message", "a", None)]
        );
        assert_eq!(parse("data: a"), vec![]);
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        assert_eq!(
            parse_chunks(&[b"data: a\xff\xfeb\n\n"]),
            vec![frame("message", "a\u{fffd}\u{fffd}b", None)]
        );
    }

    #[test]
    fn a_frame_over_the_limit_is_refused() {
        let mut parser = Parser::default();
        let mut out = VecDeque::new();
        let chunk = vec![b'x'; 1024 * 1024];
        parser.push(b"data: ", &mut out).unwrap();
        let mut refused = None;
        for _ in 0..=FRAME_BYTES_MAX / chunk.len() {
            if let Err(e) = parser.push(&chunk, &mut out) {
                refused = Some(e);
                break;
            }
        }
        let e = refused.expect("a line over the limit is refused");
        assert!(e.bytes > FRAME_BYTES_MAX, "{e}");
        assert!(out.is_empty());

        // Many lines of one frame count together.
        let mut parser = Parser::default();
        let line = format!("data: {}\n", "y".repeat(1024 * 1024));
        let mut refused = false;
        for _ in 0..=FRAME_BYTES_MAX / line.len() {
            if parser.push(line.as_bytes(), &mut out).is_err() {
                refused = true;
                break;
            }
        }
        assert!(refused, "a frame of many lines over the limit is refused");
        assert!(out.is_empty());
    }
}
