//! The toml-test conformance corpus (TOML 1.1 file list), read from the
//! shared corpus directory beside the repository.
//!
//! - every listed `valid/**.toml` parses with the `toml` crate and its typed
//!   tree (`toml::Table`, before any JSON conversion) equals the tagged JSON
//!   beside it; then `document::parse` accepts it and its JSON agrees too —
//!   except the files holding `nan`/`inf`, which it must reject with
//!   `E_PARSE` at the right line;
//! - every listed `invalid/**.toml` is rejected by `document::parse` with
//!   `E_PARSE` or `E_ENCODING` and a line ≥ 1, without panicking.
//!
//! Where the `toml` crate disagrees with the corpus, the file is listed in
//! [`KNOWN_DISAGREEMENTS`] with the reason, and the list is asserted to be
//! exact: an entry that starts agreeing fails the test, so it cannot rot.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test, not a crashed daemon"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use hotconf::pipeline::document;
use hotconf::pipeline::rejection::{Code, Rejection};
use toml::value::{Datetime, Offset};

/// Files where the `toml` crate (or hotconf's use of it) disagrees with
/// toml-test, with the reason. Must be exact: see the module docs.
const KNOWN_DISAGREEMENTS: &[(&str, &str)] = &[];

/// The valid files holding `nan`/`inf`: hotconf must reject them (`E_PARSE`)
/// because JSON has no such values. Each with the 1-based line and column of
/// the first such value, and every line holding one.
const NAN_INF_FILES: &[(&str, usize, usize, &[usize])] = &[
    ("valid/float/inf-and-nan.toml", 3, 7, &[3, 4, 5, 6, 7, 8]),
    ("valid/comment/after-literal-no-ws.toml", 1, 5, &[1, 2]),
    ("valid/spec-1.1.0/common-25.toml", 2, 7, &[2, 3, 4, 7, 8, 9]),
];

/// Where the corpus is: `$HOTCONF_TOML_TEST_DIR` if set (handy in a git
/// worktree that has no `shared/` beside it), else
/// `$CARGO_MANIFEST_DIR/../shared/corpus/toml-test`. Missing is a failure,
/// never a skip.
fn corpus_dir() -> PathBuf {
    let dir = match std::env::var_os("HOTCONF_TOML_TEST_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/toml-test"),
    };
    assert!(
        dir.join("tests/files-toml-1.1.0").is_file(),
        "toml-test corpus not found at {} (expected tests/files-toml-1.1.0 there); \
         put shared/ beside the repository or set HOTCONF_TOML_TEST_DIR",
        dir.display()
    );
    dir
}

/// The listed files of one kind (`valid/` or `invalid/`) ending in `.toml`.
fn listed(dir: &Path, prefix: &str) -> Vec<String> {
    let list = std::fs::read_to_string(dir.join("tests/files-toml-1.1.0"))
        .expect("read the toml-test file list");
    let files: Vec<String> = list
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with(prefix) && l.ends_with(".toml"))
        .map(String::from)
        .collect();
    assert!(!files.is_empty(), "no {prefix} files listed");
    files
}

/// The category of a corpus file: `valid/float/x.toml` → `float`; files
/// directly under `valid/` are `(top level)`.
fn category(file: &str) -> &str {
    let parts: Vec<&str> = file.split('/').collect();
    if parts.len() > 2 {
        parts[1]
    } else {
        "(top level)"
    }
}

/// Per-category pass counts, printed at the end.
#[derive(Default)]
struct Tally(BTreeMap<String, (usize, usize)>);

impl Tally {
    fn record(&mut self, file: &str, passed: bool) {
        let e = self.0.entry(category(file).to_string()).or_default();
        e.1 += 1;
        if passed {
            e.0 += 1;
        }
    }

    fn print(&self, what: &str) {
        let (p, t) = self
            .0
            .values()
            .fold((0, 0), |(p, t), (a, b)| (p + a, t + b));
        println!("{what}: {p}/{t} passed");
        for (cat, (p, t)) in &self.0 {
            println!("  {cat:<16} {p}/{t}");
        }
    }
}

fn run_guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into())
    })
}

/// Asserts that the disagreements found are exactly the allowlisted ones.
fn assert_exact_allowlist(found: &BTreeMap<String, String>, kind: &str) {
    println!(
        "{kind} files where the toml crate disagrees with toml-test: {}",
        found.len()
    );
    for (file, why) in found {
        println!("  {file}: {why}");
    }
    let allowed: BTreeMap<&str, &str> = KNOWN_DISAGREEMENTS
        .iter()
        .filter(|(f, _)| f.starts_with(kind))
        .copied()
        .collect();
    let mut problems = Vec::new();
    for (file, why) in found {
        if !allowed.contains_key(file.as_str()) {
            problems.push(format!("{file}: {why}"));
        }
    }
    for (file, reason) in &allowed {
        if !found.contains_key(*file) {
            problems.push(format!(
                "{file}: listed in KNOWN_DISAGREEMENTS ({reason}) but now agrees: remove it"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} unexpected result(s) for {kind} corpus files:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

// ---------------------------------------------------------------------------
// toml-test's tagged JSON, compared with the typed TOML tree.

/// A datetime reduced to comparable parts: kind, date, time (with
/// nanoseconds, so `.6` == `.600`) and offset in minutes.
type DtParts = (
    &'static str,
    Option<(u16, u8, u8)>,
    Option<(u8, u8, u8, u32)>,
    Option<i32>,
);

fn kind_of(date: bool, time: bool, offset: bool) -> &'static str {
    match (date, time, offset) {
        (true, true, true) => "datetime",
        (true, true, false) => "datetime-local",
        (true, false, false) => "date-local",
        (false, true, false) => "time-local",
        _ => "impossible",
    }
}

fn toml_datetime_parts(d: &Datetime) -> DtParts {
    let date = d.date.map(|d| (d.year, d.month, d.day));
    let time = d.time.map(|t| {
        (
            t.hour,
            t.minute,
            t.second.unwrap_or(0),
            t.nanosecond.unwrap_or(0),
        )
    });
    let offset = d.offset.map(|o| match o {
        Offset::Z => 0,
        Offset::Custom { minutes } => i32::from(minutes),
    });
    (
        kind_of(date.is_some(), time.is_some(), offset.is_some()),
        date,
        time,
        offset,
    )
}

/// Parses the RFC 3339-like strings toml-test (and hotconf's JSON) use:
/// `YYYY-MM-DD`, `HH:MM[:SS[.frac]]`, both joined by `T`/`t`/space, with an
/// optional `Z`/`z`/`±HH:MM` offset.
fn text_datetime_parts(s: &str) -> Option<DtParts> {
    fn num<T: std::str::FromStr>(s: &str, range: std::ops::Range<usize>) -> Option<T> {
        let part = s.get(range)?;
        if !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    }
    let mut rest = s;
    let mut date = None;
    if rest.len() >= 10 && rest.as_bytes().get(4) == Some(&b'-') {
        date = Some((num(rest, 0..4)?, num(rest, 5..7)?, num(rest, 8..10)?));
        rest = &rest[10..];
        if rest.is_empty() {
            return Some((kind_of(true, false, false), date, None, None));
        }
        let sep = rest.as_bytes()[0];
        if !matches!(sep, b'T' | b't' | b' ') {
            return None;
        }
        rest = &rest[1..];
    }
    let hour = num(rest, 0..2)?;
    let minute = num(rest, 3..5)?;
    rest = rest.get(5..)?;
    let mut second = 0;
    let mut nanos = 0;
    if let Some(r) = rest.strip_prefix(':') {
        second = num(r, 0..2)?;
        rest = &r[2..];
        if let Some(r) = rest.strip_prefix('.') {
            let digits = r.bytes().take_while(u8::is_ascii_digit).count();
            let frac = &r[..digits];
            let mut padded = frac.chars().take(9).collect::<String>();
            while padded.len() < 9 {
                padded.push('0');
            }
            nanos = padded.parse().ok()?;
            rest = &r[digits..];
        }
    }
    let offset = match rest {
        "" => None,
        "Z" | "z" => Some(0),
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let h: i32 = num(rest, 1..3)?;
            let m: i32 = num(rest, 4..6)?;
            if rest.len() != 6 {
                return None;
            }
            Some(sign * (h * 60 + m))
        }
    };
    let time = Some((hour, minute, second, nanos));
    Some((
        kind_of(date.is_some(), true, offset.is_some()),
        date,
        time,
        offset,
    ))
}

/// `Some((type, value))` when `json` is a toml-test tagged scalar.
fn tagged(json: &serde_json::Value) -> Option<(&str, &str)> {
    let obj = json.as_object()?;
    if obj.len() != 2 {
        return None;
    }
    Some((obj.get("type")?.as_str()?, obj.get("value")?.as_str()?))
}

fn expected_float(value: &str) -> Option<f64> {
    match value {
        "nan" | "+nan" | "-nan" => Some(f64::NAN),
        "inf" | "+inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        v => v.parse().ok(),
    }
}

fn floats_equal(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b
}

/// Compares the typed TOML tree with toml-test's tagged JSON. `Err` names
/// the first difference (by path), never quoting more than the values.
fn compare_toml(path: &str, got: &toml::Value, want: &serde_json::Value) -> Result<(), String> {
    if let Some((ty, value)) = tagged(want) {
        let ok = match (ty, got) {
            ("string", toml::Value::String(s)) => s == value,
            ("integer", toml::Value::Integer(i)) => value.parse::<i64>().ok() == Some(*i),
            ("float", toml::Value::Float(f)) => {
                expected_float(value).is_some_and(|e| floats_equal(*f, e))
            }
            ("bool", toml::Value::Boolean(b)) => value.parse::<bool>().ok() == Some(*b),
            (
                "datetime" | "datetime-local" | "date-local" | "time-local",
                toml::Value::Datetime(d),
            ) => {
                let got = toml_datetime_parts(d);
                got.0 == ty && text_datetime_parts(value) == Some(got)
            }
            _ => false,
        };
        return if ok {
            Ok(())
        } else {
            Err(format!("{path}: got {got:?}, want {ty} {value:?}"))
        };
    }
    match (got, want) {
        (toml::Value::Array(a), serde_json::Value::Array(b)) => {
            if a.len() != b.len() {
                return Err(format!(
                    "{path}: array of {} items, want {}",
                    a.len(),
                    b.len()
                ));
            }
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                compare_toml(&format!("{path}/{i}"), x, y)?;
            }
            Ok(())
        }
        (toml::Value::Table(t), serde_json::Value::Object(o)) => compare_table(path, t, o),
        _ => Err(format!("{path}: got {got:?}, want {want}")),
    }
}

fn compare_table(
    path: &str,
    got: &toml::Table,
    want: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), String> {
    let a: BTreeSet<&String> = got.keys().collect();
    let b: BTreeSet<&String> = want.keys().collect();
    if a != b {
        return Err(format!("{path}: keys {a:?}, want {b:?}"));
    }
    for (k, v) in got {
        compare_toml(&format!("{path}/{k}"), v, &want[k])?;
    }
    Ok(())
}

/// Compares hotconf's JSON conversion with toml-test's tagged JSON:
/// datetimes must be strings naming the same instant/kind, floats numbers
/// with the same value.
fn compare_json(
    path: &str,
    got: &serde_json::Value,
    want: &serde_json::Value,
) -> Result<(), String> {
    use serde_json::Value as J;
    if let Some((ty, value)) = tagged(want) {
        let ok = match (ty, got) {
            ("string", J::String(s)) => s == value,
            ("integer", J::Number(n)) => n.as_i64().is_some() && n.as_i64() == value.parse().ok(),
            ("float", J::Number(n)) => match (n.as_f64(), expected_float(value)) {
                (Some(g), Some(e)) => floats_equal(g, e),
                _ => false,
            },
            ("bool", J::Bool(b)) => value.parse::<bool>().ok() == Some(*b),
            ("datetime" | "datetime-local" | "date-local" | "time-local", J::String(s)) => {
                let g = text_datetime_parts(s);
                g.is_some() && g == text_datetime_parts(value) && g.is_some_and(|g| g.0 == ty)
            }
            _ => false,
        };
        return if ok {
            Ok(())
        } else {
            Err(format!("{path}: got {got}, want {ty} {value:?}"))
        };
    }
    match (got, want) {
        (J::Array(a), J::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                compare_json(&format!("{path}/{i}"), x, y)?;
            }
            Ok(())
        }
        (J::Object(a), J::Object(b)) => {
            let ka: BTreeSet<&String> = a.keys().collect();
            let kb: BTreeSet<&String> = b.keys().collect();
            if ka != kb {
                return Err(format!("{path}: keys {ka:?}, want {kb:?}"));
            }
            for (k, v) in a {
                compare_json(&format!("{path}/{k}"), v, &b[k])?;
            }
            Ok(())
        }
        _ => Err(format!("{path}: got {got}, want {want}")),
    }
}

fn problem_lines(r: &Rejection) -> Vec<Option<usize>> {
    r.problems.iter().map(|p| p.line).collect()
}

// ---------------------------------------------------------------------------

#[test]
fn every_valid_corpus_file_parses_to_its_json() {
    let dir = corpus_dir();
    let files = listed(&dir, "valid/");
    let mut typed = Tally::default();
    let mut piped = Tally::default();
    let mut disagreements = BTreeMap::new();
    let mut failures = Vec::new();

    for file in &files {
        let toml_path = dir.join("tests").join(file);
        let json_path = toml_path.with_extension("json");
        let bytes = std::fs::read(&toml_path).unwrap_or_else(|e| panic!("{file}: {e}"));
        let json_text = std::fs::read_to_string(&json_path)
            .unwrap_or_else(|e| panic!("{}: {e}", json_path.display()));
        let want: serde_json::Value =
            serde_json::from_str(&json_text).unwrap_or_else(|e| panic!("{file}.json: {e}"));

        // 1. The toml crate alone, compared on the typed tree.
        let typed_result = run_guarded(|| {
            let text = std::str::from_utf8(&bytes).map_err(|e| format!("not UTF-8: {e}"))?;
            let table: toml::Table = text
                .parse()
                .map_err(|e: toml::de::Error| format!("toml rejects it: {}", e.message()))?;
            let want = want
                .as_object()
                .ok_or_else(|| "corpus JSON is not an object".to_string())?;
            compare_table("", &table, want)
        })
        .unwrap_or_else(|panic| Err(format!("toml panicked: {panic}")));
        typed.record(file, typed_result.is_ok());
        if let Err(why) = typed_result {
            disagreements.insert(file.clone(), why);
            continue;
        }

        // 2. hotconf's pipeline: accepted with the same JSON, or for the
        //    nan/inf files, rejected exactly where they hold one.
        let verdict = run_guarded(|| document::parse(file, &bytes));
        let outcome: Result<(), String> =
            match (verdict, NAN_INF_FILES.iter().find(|f| f.0 == file)) {
                (Err(panic), _) => Err(format!("document::parse panicked: {panic}")),
                (Ok(Ok(parsed)), None) => compare_json("", &parsed.value, &want),
                (Ok(Err(r)), None) => Err(format!("document::parse rejects it: {r}")),
                (Ok(Ok(_)), Some(_)) => Err("nan/inf accepted by document::parse".into()),
                (Ok(Err(r)), Some(&(_, line, column, lines))) => {
                    let first = r.problems.first();
                    if r.code != Code::Parse {
                        Err(format!("want E_PARSE, got {r}"))
                    } else if first.map(|p| (p.line, p.column)) != Some((Some(line), Some(column)))
                    {
                        Err(format!("want first problem at {line}:{column}, got {r}"))
                    } else if !r
                        .problems
                        .iter()
                        .all(|p| p.line.is_some_and(|l| lines.contains(&l)))
                    {
                        Err(format!(
                            "want problems only on lines {lines:?}, got {:?}",
                            problem_lines(&r)
                        ))
                    } else {
                        Ok(())
                    }
                }
            };
        piped.record(file, outcome.is_ok());
        if let Err(why) = outcome {
            failures.push(format!("{file}: {why}"));
        }
    }

    typed.print("valid, toml crate vs tagged JSON");
    piped.print("valid, hotconf document::parse");
    assert_exact_allowlist(&disagreements, "valid/");
    assert!(
        failures.is_empty(),
        "{} valid corpus file(s) mishandled by document::parse:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_invalid_corpus_file_is_rejected_with_a_line() {
    let dir = corpus_dir();
    let files = listed(&dir, "invalid/");
    let mut tally = Tally::default();
    let mut disagreements = BTreeMap::new();
    let mut failures = Vec::new();

    for file in &files {
        let bytes =
            std::fs::read(dir.join("tests").join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let outcome = match run_guarded(|| document::parse(file, &bytes)) {
            Err(panic) => Err(format!("document::parse panicked: {panic}")),
            Ok(Ok(_)) => Err("accepted".to_string()),
            Ok(Err(r)) => {
                let located = !r.problems.is_empty()
                    && r.problems.iter().all(|p| p.line.is_some_and(|l| l >= 1));
                if !matches!(r.code, Code::Parse | Code::Encoding) {
                    Err(format!("wrong code: {r}"))
                } else if !located {
                    Err(format!("no line >= 1: {r}"))
                } else {
                    Ok(())
                }
            }
        };
        tally.record(file, outcome.is_ok());
        match outcome {
            // Accepting an invalid file is the toml crate disagreeing with
            // the corpus: allowlisted with a reason, or a failure.
            Err(why) if why == "accepted" => {
                disagreements.insert(file.clone(), why);
            }
            Err(why) => failures.push(format!("{file}: {why}")),
            Ok(()) => {}
        }
    }

    tally.print("invalid, hotconf document::parse");
    assert_exact_allowlist(&disagreements, "invalid/");
    assert!(
        failures.is_empty(),
        "{} invalid corpus file(s) mishandled:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The comparison itself must not be vacuous: it tells apart what toml-test
/// tells apart.
#[test]
fn tagged_comparison_detects_differences() {
    let table: toml::Table = r#"
        i = 42
        f = 0.5
        s = "x"
        d = 1979-05-27T07:32:00.6Z
        l = 07:32:00
        a = [1, {b = true}]
    "#
    .parse()
    .expect("valid TOML");
    let good = serde_json::json!({
        "i": {"type": "integer", "value": "42"},
        "f": {"type": "float", "value": "0.5"},
        "s": {"type": "string", "value": "x"},
        "d": {"type": "datetime", "value": "1979-05-27T07:32:00.600Z"},
        "l": {"type": "time-local", "value": "07:32:00"},
        "a": [{"type": "integer", "value": "1"}, {"b": {"type": "bool", "value": "true"}}]
    });
    let good = good.as_object().expect("object");
    assert_eq!(compare_table("", &table, good), Ok(()));
    let mutations: [(&str, serde_json::Value); 8] = [
        ("i", serde_json::json!({"type": "integer", "value": "43"})),
        ("i", serde_json::json!({"type": "float", "value": "42"})),
        ("f", serde_json::json!({"type": "float", "value": "nan"})),
        ("s", serde_json::json!({"type": "string", "value": "y"})),
        (
            "d",
            serde_json::json!({"type": "datetime-local", "value": "1979-05-27T07:32:00.6"}),
        ),
        (
            "d",
            serde_json::json!({"type": "datetime", "value": "1979-05-27T07:32:00.6+01:00"}),
        ),
        (
            "l",
            serde_json::json!({"type": "time-local", "value": "07:32:01"}),
        ),
        ("a", serde_json::json!([{"type": "integer", "value": "1"}])),
    ];
    for (key, wrong) in mutations {
        let mut want = good.clone();
        want.insert(key.to_string(), wrong.clone());
        assert!(
            compare_table("", &table, &want).is_err(),
            "{key} = {wrong} should differ"
        );
    }
    let mut extra = good.clone();
    extra.insert(
        "z".into(),
        serde_json::json!({"type": "bool", "value": "true"}),
    );
    assert!(compare_table("", &table, &extra).is_err());
}
