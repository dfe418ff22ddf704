//! Bytes → parse → validate → locate every violation, against the shipped
//! schemas and one using `$ref`, `writeOnly`, `pattern` and `format`: never
//! a panic; a rejection always has a problem; every located problem is
//! inside the text; locating any reported pointer never panics; an accepted
//! value redacts without panicking.
#![no_main]

use hotconf::pipeline::document::{locate, Target};
use hotconf::pipeline::schema::{Schema, SchemaCache};
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::{Arc, OnceLock};

const MAIN: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "additionalProperties": false,
  "required": ["name"],
  "properties": {
    "name": { "type": "string", "pattern": "^[a-z][a-z0-9-]{0,30}$" },
    "email": { "type": "string", "format": "email" },
    "when": { "type": "string", "format": "date-time" },
    "password": { "$ref": "shared.schema.json#/$defs/secret" },
    "nested": {
      "type": "object",
      "properties": {
        "token": { "type": "string", "writeOnly": true },
        "list": { "type": "array", "items": { "$ref": "shared.schema.json#/$defs/port" }, "maxItems": 8 }
      }
    }
  }
}"#;

const SHARED: &str = r#"{
  "$defs": {
    "secret": { "type": "string", "writeOnly": true, "minLength": 8 },
    "port": { "type": "integer", "minimum": 1, "maximum": 65535 }
  }
}"#;

fn schemas() -> &'static Vec<Arc<Schema>> {
    static S: OnceLock<Vec<Arc<Schema>>> = OnceLock::new();
    S.get_or_init(|| {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas");
        let mut cache = SchemaCache::new();
        let mut out: Vec<Arc<Schema>> = ["app", "features"]
            .iter()
            .map(|n| cache.load(&shipped, n).expect("shipped schema compiles"))
            .collect();
        let own = Schema::from_sources(
            Path::new("fuzz-schemas"),
            "fuzz",
            vec![
                ("fuzz.schema.json".into(), MAIN.as_bytes().to_vec()),
                ("shared.schema.json".into(), SHARED.as_bytes().to_vec()),
            ],
        )
        .expect("fuzz schema compiles");
        out.push(Arc::new(own));
        out
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    let all = schemas();
    let schema = &all[usize::from(which) % all.len()];
    match hotconf::pipeline::evaluate("fuzz.toml", bytes, schema) {
        Ok(parsed) => {
            let _ = schema.redact(&parsed.value);
            let _ = schema.secret_pointers(&parsed.value);
        }
        Err(rejection) => {
            assert!(!rejection.problems.is_empty(), "a rejection without a problem");
            let text = String::from_utf8_lossy(bytes);
            let lines = text.split('\n').count();
            for p in &rejection.problems {
                if let Some(line) = p.line {
                    assert!(line >= 1 && line <= lines, "line {line} outside 1..={lines}");
                }
                let _ = locate(&text, &p.pointer, Target::Value);
                let _ = locate(&text, &p.pointer, Target::Key);
            }
        }
    }
});
