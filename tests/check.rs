//! `hotconf check`, driven through the real binary in temporary directories:
//! every code, every location rule of SPEC §3, secrets never printed, and
//! the exit codes of SPEC §4.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test, not a crashed daemon"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// A valid `app.toml` for the repository's `schemas/app.schema.json`. Tests
/// replace one line to break it, so line numbers below refer to this text.
const APP: &str = r#"service = "orders-api"
environment = "staging"
approved_at = 2026-11-20T09:30:00Z

[server]
listen = "127.0.0.1:8080"
timeout_ms = 5000

[workers]
count = 4

[database]
url = "postgres://orders@db.internal:5432/orders"
user = "orders"
password = "correct-horse-battery-staple"
"#;

/// A scratch directory holding `configs/` and a copy of the repository's
/// `schemas/`.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("configs")).unwrap();
        std::fs::create_dir(dir.path().join("schemas")).unwrap();
        let repo_schemas = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
        for entry in std::fs::read_dir(repo_schemas).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(
                entry.path(),
                dir.path().join("schemas").join(entry.file_name()),
            )
            .unwrap();
        }
        Scratch { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `configs/NAME`.
    fn config(&self, name: &str, text: &str) -> &Self {
        std::fs::write(self.path().join("configs").join(name), text).unwrap();
        self
    }

    /// Writes `schemas/NAME`.
    fn schema(&self, name: &str, text: &str) -> &Self {
        std::fs::write(self.path().join("schemas").join(name), text).unwrap();
        self
    }

    /// `configs/app.toml` = [`APP`] with `from` replaced by `to`.
    fn app_with(&self, from: &str, to: &str) -> &Self {
        assert!(APP.contains(from), "fixture does not contain {from:?}");
        self.config("app.toml", &APP.replacen(from, to, 1))
    }

    /// Runs `hotconf check ARGS` in the scratch directory.
    fn check(&self, args: &[&str]) -> Run {
        let out = Command::new(env!("CARGO_BIN_EXE_hotconf"))
            .arg("check")
            .args(args)
            .current_dir(self.path())
            .env_remove("HOTCONF_CONFIG_DIR")
            .env_remove("HOTCONF_SCHEMA_DIR")
            .env_remove("HOTCONF_MAX_FILE_SIZE")
            .output()
            .unwrap();
        Run::from(out)
    }

    /// `hotconf check --format json`, parsed.
    fn check_json(&self, args: &[&str]) -> (i32, Vec<Value>) {
        let mut all = vec!["--format", "json"];
        all.extend_from_slice(args);
        let run = self.check(&all);
        let v: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
            panic!("stdout is not JSON ({e}): {}", run.stdout);
        });
        (run.code, v.as_array().unwrap().clone())
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Self {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        }
    }
}

impl Run {
    fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

#[test]
fn shipped_configs_are_valid() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(env!("CARGO_BIN_EXE_hotconf"))
        .args(["check"])
        .current_dir(&repo)
        .env_remove("HOTCONF_CONFIG_DIR")
        .env_remove("HOTCONF_SCHEMA_DIR")
        .output()
        .unwrap();
    let run = Run::from(out);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.stdout, "");
}

#[test]
fn fixture_is_valid_and_exit_is_zero() {
    let s = Scratch::new();
    s.config("app.toml", APP);
    let run = s.check(&[]);
    assert_eq!((run.code, run.stdout.as_str()), (0, ""), "{}", run.stderr);
}

#[test]
fn string_timeout_is_the_outage_we_exist_for() {
    let s = Scratch::new();
    s.app_with("timeout_ms = 5000", "timeout_ms = \"5000ms\"");
    let run = s.check(&[]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.lines(),
        vec![
            r#"configs/app.toml:7:14: E_SCHEMA /server/timeout_ms: "5000ms" is not of type "integer""#
        ]
    );
    let (code, problems) = s.check_json(&[]);
    assert_eq!(code, 1);
    assert_eq!(problems.len(), 1);
    let p = &problems[0];
    assert_eq!(p["code"], "E_SCHEMA");
    assert_eq!(p["pointer"], "/server/timeout_ms");
    assert_eq!(
        (p["line"].as_u64(), p["column"].as_u64()),
        (Some(7), Some(14))
    );
}

#[test]
fn syntax_error_reports_line_and_column() {
    let s = Scratch::new();
    s.app_with("count = 4", "count = = 4");
    let run = s.check(&[]);
    assert_eq!(run.code, 1);
    let lines = run.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("configs/app.toml:10:9: E_PARSE "),
        "{}",
        lines[0]
    );
}

#[test]
fn two_violations_are_both_reported_in_source_order() {
    let s = Scratch::new();
    s.config(
        "app.toml",
        &APP.replacen("timeout_ms = 5000", "timeout_ms = \"5s\"", 1)
            .replacen("count = 4", "count = 1000", 1),
    );
    let run = s.check(&[]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.lines(),
        vec![
            r#"configs/app.toml:7:14: E_SCHEMA /server/timeout_ms: "5s" is not of type "integer""#,
            "configs/app.toml:10:9: E_SCHEMA /workers/count: 1000 is greater than the maximum of 256",
        ]
    );
}

#[test]
fn extra_key_points_at_the_key() {
    let s = Scratch::new();
    s.app_with("count = 4", "count = 4\n  threads = 2");
    let run = s.check(&[]);
    assert_eq!(
        run.lines(),
        vec![
            r#"configs/app.toml:11:3: E_SCHEMA /workers/threads: additional property "threads" is not allowed"#
        ]
    );
}

#[test]
fn missing_required_key_points_at_the_table_header() {
    let s = Scratch::new();
    s.app_with("user = \"orders\"\n", "");
    let run = s.check(&[]);
    assert_eq!(
        run.lines(),
        vec![r#"configs/app.toml:12:1: E_SCHEMA /database: "user" is a required property"#]
    );
    // At the root: line 1, column 1.
    s.app_with("service = \"orders-api\"\n", "");
    let run = s.check(&[]);
    assert_eq!(
        run.lines(),
        vec![r#"configs/app.toml:1:1: E_SCHEMA "service" is a required property"#]
    );
}

#[test]
fn violation_inside_a_ref_definition() {
    // `timeout_ms` is `common.schema.json#/$defs/duration_ms` (minimum 1).
    let s = Scratch::new();
    s.app_with("timeout_ms = 5000", "timeout_ms = 0");
    let run = s.check(&[]);
    assert_eq!(
        run.lines(),
        vec!["configs/app.toml:7:14: E_SCHEMA /server/timeout_ms: 0 is less than the minimum of 1"]
    );
    // `listen` is `common.schema.json#/$defs/port_address` (a pattern).
    s.app_with("\"127.0.0.1:8080\"", "\"localhost\"");
    let run = s.check(&[]);
    assert_eq!(run.lines().len(), 1, "{}", run.stdout);
    assert!(
        run.lines()[0].starts_with(
            r#"configs/app.toml:6:10: E_SCHEMA /server/listen: "localhost" does not match "#
        ),
        "{}",
        run.stdout
    );
}

#[test]
fn format_violations_are_asserted() {
    let s = Scratch::new();
    s.app_with(
        "url = \"postgres://orders@db.internal:5432/orders\"",
        "url = \"postgres://bad host/\"",
    );
    let run = s.check(&[]);
    assert_eq!(
        run.lines(),
        vec![
            r#"configs/app.toml:13:7: E_SCHEMA /database/url: "postgres://bad host/" is not a "uri""#
        ]
    );
    // features.schema.json: owner is an email.
    s.config("app.toml", APP);
    s.config(
        "features.toml",
        "[flags.dark_mode]\nenabled = true\nowner = \"nobody\"\n",
    );
    let run = s.check(&[]);
    assert_eq!(
        run.lines(),
        vec![
            r#"configs/features.toml:3:9: E_SCHEMA /flags/dark_mode/owner: "nobody" is not a "email""#
        ]
    );
}

#[test]
fn pattern_violation() {
    let s = Scratch::new();
    s.app_with("service = \"orders-api\"", "service = \"Orders API\"");
    let run = s.check(&[]);
    assert_eq!(
        run.lines(),
        vec![
            r#"configs/app.toml:1:11: E_SCHEMA /service: "Orders API" does not match "^[a-z][a-z0-9-]*$""#
        ]
    );
}

#[test]
fn nan_is_rejected_never_null() {
    let s = Scratch::new();
    s.config("features.toml", "[limits]\nmax_cart_items = nan\n");
    let run = s.check(&["configs/features.toml"]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.lines(),
        vec!["configs/features.toml:2:18: E_PARSE nan has no JSON value; not allowed"]
    );
}

#[test]
fn toml_datetime_is_validated_as_a_date_time_string() {
    let s = Scratch::new();
    // An offset datetime is a valid "date-time" (the fixture passes)...
    s.config("app.toml", APP);
    assert_eq!(s.check(&[]).code, 0);
    // ...a local date is not.
    s.app_with(
        "approved_at = 2026-11-20T09:30:00Z",
        "approved_at = 2026-11-20",
    );
    let run = s.check(&[]);
    assert_eq!(
        run.lines(),
        vec![r#"configs/app.toml:3:15: E_SCHEMA /approved_at: "2026-11-20" is not a "date-time""#]
    );
    // A local date is a valid "date" (features.schema.json: expires).
    s.config("app.toml", APP);
    s.config(
        "features.toml",
        "[flags.x]\nenabled = true\nowner = \"a@example.com\"\nexpires = 2027-01-31\n",
    );
    assert_eq!(s.check(&[]).code, 0);
}

#[test]
fn missing_schema() {
    let s = Scratch::new();
    s.config("app.toml", APP).config("orphan.toml", "x = 1\n");
    let run = s.check(&[]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.lines(),
        vec![
            r#"configs/orphan.toml: E_NO_SCHEMA no schema for document "orphan": schemas/orphan.schema.json does not exist"#
        ]
    );
}

#[test]
fn schema_that_is_not_json() {
    let s = Scratch::new();
    s.config("x.toml", "a = 1\n")
        .schema("x.schema.json", "{\n  \"type\": \"object\",\n  oops\n}\n");
    let run = s.check(&["configs/x.toml"]);
    assert_eq!(run.code, 1);
    let lines = run.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("schemas/x.schema.json:3:3: E_SCHEMA_INVALID not JSON: "),
        "{}",
        lines[0]
    );
}

#[test]
fn schema_with_an_unknown_type() {
    let s = Scratch::new();
    s.config("x.toml", "a = 1\n").schema(
        "x.schema.json",
        r#"{"type": "object", "properties": {"a": {"type": "integr"}}}"#,
    );
    let (code, problems) = s.check_json(&["configs/x.toml"]);
    assert_eq!(code, 1);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0]["code"], "E_SCHEMA_INVALID");
    assert_eq!(problems[0]["file"], "schemas/x.schema.json");
    assert_eq!(problems[0]["pointer"], "/properties/a/type");
    assert!(
        problems[0]["message"]
            .as_str()
            .unwrap()
            .starts_with(r#"unknown type "integr""#),
        "{problems:?}"
    );
}

#[test]
fn unknown_type_in_shared_definitions_is_reported_on_that_file() {
    let s = Scratch::new();
    let common = std::fs::read_to_string(s.path().join("schemas/common.schema.json")).unwrap();
    s.config("app.toml", APP).schema(
        "common.schema.json",
        &common.replacen(r#""type": "integer""#, r#""type": "int""#, 1),
    );
    let run = s.check(&[]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.lines(),
        vec![
            r#"schemas/common.schema.json: E_SCHEMA_INVALID /$defs/duration_ms/type: unknown type "int" (expected one of array, boolean, integer, null, number, object, string)"#
        ]
    );
}

#[test]
fn broken_shared_definitions_are_reported_once() {
    let s = Scratch::new();
    s.config("app.toml", APP)
        .config(
            "features.toml",
            "[flags.x]\nenabled = true\nowner = \"a@example.com\"\n",
        )
        .schema("common.schema.json", "{ not json");
    let run = s.check(&[]);
    assert_eq!(run.code, 1);
    let lines = run.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("schemas/common.schema.json:1:3: E_SCHEMA_INVALID"));
}

#[test]
fn refs_outside_the_schema_directory_are_refused() {
    let s = Scratch::new();
    s.config("a.toml", "x = 1\n")
        .schema("a.schema.json", r#"{"$ref": "https://example.com/s.json"}"#)
        .config("b.toml", "x = 1\n")
        .schema("b.schema.json", r#"{"$ref": "../secret.json"}"#)
        .config("c.toml", "x = 1\n")
        .schema("c.schema.json", r#"{"$ref": "/etc/passwd"}"#);
    let run = s.check(&["configs/a.toml", "configs/b.toml", "configs/c.toml"]);
    let lines = run.lines();
    assert_eq!(lines.len(), 3, "{lines:?}");
    for (line, file) in lines.iter().zip(["a", "b", "c"]) {
        assert!(
            line.starts_with(&format!(
                "schemas/{file}.schema.json: E_SCHEMA_INVALID $ref "
            )),
            "{line}"
        );
    }
}

#[test]
fn secret_failing_min_length_is_never_printed() {
    let s = Scratch::new();
    s.app_with("\"correct-horse-battery-staple\"", "\"hunter2\"");
    for format in ["text", "json"] {
        let run = s.check(&["--format", format]);
        assert_eq!(run.code, 1);
        assert!(!run.stdout.contains("hunter2"), "{}", run.stdout);
        assert!(!run.stderr.contains("hunter2"), "{}", run.stderr);
        assert!(run.stdout.contains("/database/password"), "{}", run.stdout);
    }
    let run = s.check(&[]);
    assert_eq!(
        run.lines(),
        vec!["configs/app.toml:15:12: E_SCHEMA /database/password: <redacted> is shorter than 12 characters"]
    );
    // Nor when the secret has the wrong type, nor when its table is wrong.
    s.app_with(
        "password = \"correct-horse-battery-staple\"",
        "password = 918273645",
    );
    let run = s.check(&[]);
    assert!(!run.stdout.contains("918273645"), "{}", run.stdout);
    s.app_with(
        "[database]\nurl = \"postgres://orders@db.internal:5432/orders\"\nuser = \"orders\"\npassword = \"correct-horse-battery-staple\"\n",
        "database = [\"correct-horse-battery-staple\"]\n",
    );
    let run = s.check(&[]);
    assert_eq!(run.code, 1);
    assert!(!run.stdout.contains("battery"), "{}", run.stdout);
}

#[test]
fn parse_error_on_a_secret_line_does_not_echo_it() {
    let s = Scratch::new();
    s.app_with(
        "password = \"correct-horse-battery-staple\"",
        "password = \"correct-horse-battery-staple",
    );
    for format in ["text", "json"] {
        let run = s.check(&["--format", format]);
        assert_eq!(run.code, 1);
        let all = format!("{}{}", run.stdout, run.stderr);
        assert!(!all.contains("battery"), "{all}");
        assert!(all.contains("E_PARSE"), "{all}");
    }
    let run = s.check(&[]);
    assert!(
        run.stdout.starts_with("configs/app.toml:15:"),
        "{}",
        run.stdout
    );
}

#[test]
fn json_output_shape() {
    let s = Scratch::new();
    s.app_with("count = 4", "count = \"four\"");
    let (code, problems) = s.check_json(&[]);
    assert_eq!(code, 1);
    assert_eq!(problems.len(), 1);
    let obj = problems[0].as_object().unwrap();
    let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["file", "code", "pointer", "line", "column", "message"]
    );
    assert_eq!(problems[0]["file"], "configs/app.toml");
    assert_eq!(problems[0]["message"], r#""four" is not of type "integer""#);
    // No line: null, not absent.
    s.config("orphan.toml", "x = 1\n");
    let (_, problems) = s.check_json(&["configs/orphan.toml"]);
    assert_eq!(problems[0]["line"], Value::Null);
    assert_eq!(problems[0]["column"], Value::Null);
    // Valid: an empty array.
    s.config("app.toml", APP);
    let (code, problems) = s.check_json(&["configs/app.toml"]);
    assert_eq!((code, problems.len()), (0, 0));
}

#[test]
fn exit_codes() {
    let s = Scratch::new();
    s.config("app.toml", APP);
    assert_eq!(s.check(&[]).code, 0);
    assert_eq!(s.check(&["--no-such-flag"]).code, 2);
    assert_eq!(s.check(&["--format", "yaml"]).code, 2);
    s.app_with("count = 4", "count = -1");
    assert_eq!(s.check(&[]).code, 1);
}

#[test]
fn named_files_and_odd_arguments() {
    let s = Scratch::new();
    s.config("app.toml", APP).config("broken.toml", "x = \n");
    // Only the named file is checked (broken.toml is not).
    let run = s.check(&["configs/app.toml"]);
    assert_eq!((run.code, run.stdout.as_str()), (0, ""));
    // A file outside the config directory takes its schema from the schema dir.
    std::fs::write(
        s.path().join("app.toml"),
        APP.replacen("count = 4", "count = 0", 1),
    )
    .unwrap();
    let run = s.check(&["app.toml"]);
    assert_eq!(
        run.lines(),
        vec!["app.toml:10:9: E_SCHEMA /workers/count: 0 is less than the minimum of 1"]
    );
    // Not a document name; not found.
    let run = s.check(&["notes.txt", "configs/missing.toml"]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.lines(),
        vec![
            "configs/missing.toml: E_IO cannot read: not found",
            "notes.txt: E_IO not a document name (expected NAME.toml, NAME matching ^[A-Za-z0-9][A-Za-z0-9_-]*$); not checked",
        ]
    );
}

#[test]
fn editor_droppings_are_not_documents() {
    let s = Scratch::new();
    s.config("app.toml", APP)
        .config(".app.toml.swp", "garbage = = =")
        .config("app.toml~", "garbage = = =")
        .config("4913", "")
        .config(".#app.toml", "garbage = = =");
    assert_eq!(s.check(&[]).code, 0);
}

#[test]
fn too_large_encoding_and_directory_flags() {
    let s = Scratch::new();
    s.config("app.toml", APP);
    let run = s.check(&["--max-file-size", "100"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stdout.starts_with("configs/app.toml: E_TOO_LARGE "),
        "{}",
        run.stdout
    );
    std::fs::write(s.path().join("configs/app.toml"), b"service = \"a\xff\"\n").unwrap();
    let run = s.check(&[]);
    assert!(
        run.stdout.starts_with("configs/app.toml:1:13: E_ENCODING "),
        "{}",
        run.stdout
    );
    // Directories by flag and by environment.
    let run = Command::new(env!("CARGO_BIN_EXE_hotconf"))
        .args(["check"])
        .current_dir(s.path())
        .env(
            "HOTCONF_CONFIG_DIR",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("configs"),
        )
        .env(
            "HOTCONF_SCHEMA_DIR",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas"),
        )
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(0));
    let run = s.check(&["--config-dir", "nowhere"]);
    assert_eq!(
        run.lines(),
        vec!["nowhere: E_IO config directory: cannot read: not found"]
    );
}

#[test]
fn deep_nesting_is_a_clear_parse_error() {
    let s = Scratch::new();
    let deep = format!("x = {}1{}\n", "[".repeat(10_000), "]".repeat(10_000));
    s.config("app.toml", &deep);
    let run = s.check(&[]);
    assert_eq!(run.code, 1);
    assert!(
        run.stdout.starts_with("configs/app.toml:1:")
            && run.stdout.contains("E_PARSE nesting deeper than"),
        "{}",
        run.stdout
    );
}

/// The costliest shape for memory (small inline tables, ~1 KiB each once
/// parsed) is refused from a cheap count before the parser runs; the same
/// document one table shorter is parsed and judged.
#[test]
fn too_many_values_is_too_large_before_parsing() {
    let s = Scratch::new();
    s.schema("many.schema.json", "{}");
    let doc = |tables: usize| format!("a = [{}]\n", vec!["{b=1}"; tables].join(", "));
    s.config("many.toml", &doc(100_000));
    let run = s.check(&["configs/many.toml"]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.lines(),
        vec!["configs/many.toml:1:700001: E_TOO_LARGE more than 200000 values (keys, key segments, table headers and array items); not parsed"]
    );
    s.config("many.toml", &doc(99_999));
    let run = s.check(&["configs/many.toml"]);
    assert_eq!((run.code, run.stdout.as_str()), (0, ""), "{}", run.stderr);
}

#[test]
fn unknown_format_is_a_schema_error_not_a_silent_pass() {
    let s = Scratch::new();
    s.config("x.toml", "at = \"now\"\n").schema(
        "x.schema.json",
        r#"{"properties": {"at": {"type": "string", "format": "datetime"}}}"#,
    );
    let run = s.check(&[]);
    assert_eq!(run.code, 1);
    assert!(
        run.stdout.starts_with(
            r#"schemas/x.schema.json: E_SCHEMA_INVALID /properties/at/format: unknown format "datetime""#
        ),
        "{}",
        run.stdout
    );
}

#[test]
fn unevaluated_property_points_at_the_key() {
    let s = Scratch::new();
    s.config("x.toml", "a = 1\n\n[t]\nb = 2\nc = 3\n").schema(
        "x.schema.json",
        r#"{"properties": {"t": {"properties": {"b": {}}, "unevaluatedProperties": false}}}"#,
    );
    let run = s.check(&[]);
    assert_eq!(
        run.lines(),
        vec![r#"configs/x.toml:5:1: E_SCHEMA /t/c: unevaluated property "c" is not allowed"#]
    );
}

#[test]
fn many_violations_are_capped_with_a_count() {
    let s = Scratch::new();
    let items = vec!["\"x\""; 250].join(", ");
    s.config("x.toml", &format!("a = [{items}]\n")).schema(
        "x.schema.json",
        r#"{"properties": {"a": {"items": {"type": "integer"}}}}"#,
    );
    let (code, problems) = s.check_json(&[]);
    assert_eq!(code, 1);
    assert_eq!(problems.len(), 101);
    assert_eq!(problems[0]["pointer"], "/a/0");
    assert_eq!(problems[0]["column"], 6);
    assert_eq!(
        problems[100]["message"],
        "... and 150 more violations not shown (at most 100 are listed)"
    );
}

#[test]
fn long_values_are_quoted_by_their_beginning() {
    let s = Scratch::new();
    let long = "Y".repeat(5000);
    s.app_with("service = \"orders-api\"", &format!("service = \"{long}\""));
    let run = s.check(&[]);
    let lines = run.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].len() < 300, "{}", lines[0]);
    assert!(lines[0].contains("YYYY… does not match"), "{}", lines[0]);
}

/// Every case under `tests/fixtures/` is a small config directory (with its
/// own `schemas/`, or else the repository's) and the exact `expected`
/// output of `hotconf check` run inside it. They double as examples of each
/// error for operators.
#[test]
fn broken_fixtures_print_the_expected_lines() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&fixtures)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 10, "fixtures missing: {cases:?}");
    for case in cases {
        let expected = std::fs::read_to_string(case.join("expected")).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hotconf"));
        cmd.arg("check")
            .current_dir(&case)
            .env_remove("HOTCONF_CONFIG_DIR")
            .env_remove("HOTCONF_SCHEMA_DIR")
            .env_remove("HOTCONF_MAX_FILE_SIZE");
        if !case.join("schemas").is_dir() {
            cmd.args(["--schema-dir", "../../../schemas"]);
        }
        let run = Run::from(cmd.output().unwrap());
        assert_eq!(run.code, 1, "{}: {}", case.display(), run.stderr);
        assert_eq!(run.stdout, expected, "{}", case.display());
        assert!(!run.stdout.contains("hunter2") && !run.stdout.contains("battery"));
    }
}

#[test]
fn huge_documents_get_their_first_violation_only() {
    let s = Scratch::new();
    let items = vec!["\"x\""; 100_001].join(",");
    s.config("x.toml", &format!("a = [{items}]\n")).schema(
        "x.schema.json",
        r#"{"properties": {"a": {"items": {"type": "integer"}}}}"#,
    );
    let run = s.check(&[]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.lines(),
        vec![
            r#"configs/x.toml:1:6: E_SCHEMA /a/0: "x" is not of type "integer""#,
            "configs/x.toml: E_SCHEMA the document has more than 100000 values: only the first violation is listed",
        ]
    );
}
