//! Fuzzes the frame and segment-header decoders: arbitrary bytes must give an error or a frame
//! that re-encodes to the same length, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let bytes = bytes::Bytes::copy_from_slice(data);
    if let Ok((frame, len)) = factlog_log::codec::decode_frame(&bytes) {
        assert!(len <= data.len());
        assert!(frame.event.data.len() <= len);
    }
    let _ = factlog_log::codec::decode_segment_header(data);
});
