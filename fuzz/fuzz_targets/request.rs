//! The request path's hand-written parsing: blocking-query parameters
//! (`index`, `wait`), `/v1/config/NAME/json/pointer` splitting and lookup,
//! and the `Content-Length` check. The input is split at the first NUL:
//! request target, then header value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn served() -> &'static serde_json::Value {
    static V: OnceLock<serde_json::Value> = OnceLock::new();
    V.get_or_init(|| {
        serde_json::json!({
            "app": { "server": { "listen": "0.0.0.0:8080", "a/b": 1, "m~n": [1, 2, {"x": null}] } },
            "": { "empty": true },
        })
    })
}

fuzz_target!(|data: &[u8]| {
    let (target, header) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    hotconf::control::fuzz_request(target, header, served());
});
