//! Any bytes, resealed with a valid crc32c half of the time, must decode or fail with a CodecError.
#![no_main]

use fedcodec::{Accumulator, ParsedFrame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut frame = data.to_vec();
    if data.first().is_some_and(|b| b & 1 == 1) && frame.len() >= 4 {
        let body_len = frame.len() - 4;
        let crc = crc32c::crc32c(&frame[..body_len]);
        frame[body_len..].copy_from_slice(&crc.to_le_bytes());
    }
    if let Ok(parsed) = ParsedFrame::parse(&frame, 1 << 20) {
        if let Ok(values) = parsed.decode() {
            assert_eq!(values.len(), parsed.len());
        }
        if let Ok(mut acc) = Accumulator::new(parsed.len()) {
            let _ = acc.add(&frame, 0.5);
        }
    }
});
