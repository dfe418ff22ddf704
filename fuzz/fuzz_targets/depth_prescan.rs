//! The depth and value-count pre-scan alone (it runs before the recursive parser, so it must
//! never recurse, panic or read out of bounds), and the offset it reports
//! lies inside the text, on a character boundary.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    use hotconf::pipeline::document::{prescan, Prescan};
    if let Some(Prescan::TooDeep(at) | Prescan::TooManyValues(at)) = prescan(text) {
        assert!(at <= text.len(), "offset {at} past the end ({})", text.len());
        let (line, column) = hotconf::pipeline::document::line_col(text, at);
        assert!(line >= 1 && column >= 1);
    }
});
