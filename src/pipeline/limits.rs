//! The hard limits that keep every input's verdict bounded in time, memory
//! and stack, and the one guard that wraps a dependency's default.
//!
//! Each limit lives with the code it guards; this is the map:
//!
//! | limit | value | verdict |
//! |---|---|---|
//! | file size ([`crate::pipeline::Limits::max_file_size`], `--max-file-size`) | 4 MiB | `E_TOO_LARGE`, never read whole |
//! | nesting depth ([`crate::pipeline::document::MAX_DEPTH`]) | 64 | `E_PARSE` at the first too-deep place |
//! | values per document ([`crate::pipeline::document::MAX_VALUES`]) | 200,000 | `E_TOO_LARGE` where the count goes over, nothing parsed |
//! | schema regexes ([`pattern_options`]) | linear-time engine | lookaround/backreference: `E_SCHEMA_INVALID` |
//! | violations listed ([`crate::pipeline::schema::MAX_PROBLEMS`]) | 100 | the rest counted in one last problem |
//! | state manifest, documents, blobs ([`crate::persist`]) | 16 MiB, 10,000, 1 GiB in all | the persisted state is ignored (`state_ignored`) |
//!
//! The control socket's limits (connections, header and body size,
//! timeouts) are [`crate::control::Limits`]; the open-file limit they need
//! is raised by [`crate::daemon::rlimit`].
//!
//! This module does no I/O and holds no state.

/// The regex engine for every schema regex (`pattern`,
/// `patternProperties`): the `regex` crate, whose matching time is linear
/// in the subject.
///
/// `jsonschema`'s default, fancy-regex, runs patterns with lookaround or
/// backreferences on a backtracking VM that it stops only after a million
/// backtracks (~20 ms a string); a document of many distinct strings
/// multiplies that without bound (1,000 strings: ~40 s). With this engine
/// such patterns make the schema fail to compile instead, which hotconf
/// reports as `E_SCHEMA_INVALID` naming the pattern: a clear verdict when
/// the schema is loaded, not a reload that takes minutes.
pub fn pattern_options() -> jsonschema::PatternOptions<jsonschema::Regex> {
    jsonschema::PatternOptions::regex()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backtracking_patterns_do_not_compile() {
        for pattern in [r"^(a|a)+\1$", r"^(?=a)a$", r"^a(?!b)"] {
            let schema = serde_json::json!({"type": "string", "pattern": pattern});
            let built = jsonschema::options()
                .with_pattern_options(pattern_options())
                .build(&schema);
            assert!(built.is_err(), "{pattern} should be refused");
        }
    }

    #[test]
    fn textbook_catastrophic_pattern_runs_in_linear_time() {
        let schema = serde_json::json!({"type": "string", "pattern": r"^(a+)+$"});
        let v = jsonschema::options()
            .with_pattern_options(pattern_options())
            .build(&schema)
            .expect("a regular pattern compiles");
        let subject = serde_json::json!(format!("{}b", "a".repeat(100_000)));
        assert!(!v.is_valid(&subject));
    }
}
