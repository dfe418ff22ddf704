//! Bytes → UTF-8 check → depth pre-scan → TOML parse → JSON value: never a
//! panic, and every located problem lies inside the text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match hotconf::pipeline::document::parse("fuzz.toml", data) {
        Ok(parsed) => {
            // What was accepted is JSON that survives a round trip.
            let text = serde_json::to_string(&parsed.value).expect("serializable");
            let back: serde_json::Value = serde_json::from_str(&text).expect("round trip");
            assert_eq!(back, parsed.value);
        }
        Err(rejection) => {
            assert!(!rejection.problems.is_empty(), "a rejection without a problem");
            let lines = data.split(|b| *b == b'\n').count();
            for p in &rejection.problems {
                if let Some(line) = p.line {
                    assert!(line >= 1 && line <= lines, "line {line} outside 1..={lines}");
                }
                if let Some(column) = p.column {
                    assert!(column >= 1, "column 0");
                }
            }
        }
    }
});
