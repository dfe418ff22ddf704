//! Hostile input: every document or schema an operator's mistake or an
//! attacker could write gets a clear verdict, in bounded time, on a thread
//! with the default 2 MiB stack (what the daemon's tokio workers have), and
//! never a crash or a stack overflow.
//!
//! Each scenario runs on its own thread through [`bounded`], which fails the
//! test if it does not finish within a deadline. The deadlines are generous
//! on purpose (a debug build on a loaded 2-core CI machine): they prove
//! "bounded", not "fast". A stack overflow aborts the whole test binary,
//! which is a failure too. Never enlarge the stacks to make a test pass.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test, not a crashed daemon"
)]

use std::io::Write;
use std::net::TcpListener;
use std::panic::resume_unwind;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use hotconf::pipeline;
use hotconf::pipeline::document::{self, DEFAULT_MAX_FILE_SIZE, MAX_DEPTH, MAX_VALUES};
use hotconf::pipeline::rejection::{Code, Rejection};
use hotconf::pipeline::schema::SchemaCache;
use serde_json::json;

/// The stack the daemon's workers have; set explicitly so that a
/// `RUST_MIN_STACK` in the environment cannot make a test pass.
const STACK: usize = 2 * 1024 * 1024;

/// For one document or schema. Generous: each of these takes well under a
/// second on an idle machine.
const DEADLINE: Duration = Duration::from_secs(10);

/// Runs `f` on a fresh 2 MiB-stack thread and returns its result; fails the
/// test if it takes longer than `deadline` (the thread is then abandoned).
fn bounded<T: Send + 'static>(
    what: &str,
    deadline: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    let handle = thread::Builder::new()
        .name(what.to_string())
        .stack_size(STACK)
        .spawn(move || {
            let _ = tx.send(f());
        })
        .expect("spawn test thread");
    match rx.recv_timeout(deadline) {
        Ok(v) => {
            let _ = handle.join();
            v
        }
        Err(RecvTimeoutError::Timeout) => {
            panic!("{what}: no verdict within {deadline:?}")
        }
        Err(RecvTimeoutError::Disconnected) => match handle.join() {
            Err(panic) => resume_unwind(panic),
            Ok(()) => panic!("{what}: thread ended without a result"),
        },
    }
}

/// `document::parse` of `bytes`, bounded; must be a rejection.
fn rejected(what: &str, bytes: Vec<u8>) -> Rejection {
    let label = format!("{what}.toml");
    let r = bounded(what, DEADLINE, move || {
        document::parse(&label, &bytes).map(|p| p.value)
    });
    match r {
        Ok(v) => panic!("{what}: accepted, value starts {:.200}", v.to_string()),
        Err(r) => r,
    }
}

/// Asserts `r` has `code` and its first problem is at `line` (and `column`
/// when given; else some column).
fn assert_at(r: &Rejection, code: Code, line: usize, column: Option<usize>) {
    assert_eq!(r.code, code, "{r}");
    let first = r.problems.first().expect("a rejection has a problem");
    assert_eq!(first.line, Some(line), "line of {r}");
    if let Some(c) = column {
        assert_eq!(first.column, Some(c), "column of {r}");
    } else {
        assert!(first.column.is_some_and(|c| c >= 1), "column of {r}");
    }
}

fn assert_no_quote(r: &Rejection, fragment: &str) {
    for line in r.lines() {
        assert!(
            !line.contains(fragment),
            "message quotes the source ({fragment:?}): {line:.300}"
        );
    }
}

/// A `.`-joined key of `n` bare segments `k0.k1...`.
fn dotted(n: usize) -> String {
    (0..n)
        .map(|i| format!("k{i}"))
        .collect::<Vec<_>>()
        .join(".")
}

/// A config dir and schema dir in a fresh tempdir.
struct Dirs {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    configs: PathBuf,
    schemas: PathBuf,
}

impl Dirs {
    fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().to_path_buf();
        let configs = root.join("configs");
        let schemas = root.join("schemas");
        std::fs::create_dir(&configs).expect("mkdir configs");
        std::fs::create_dir(&schemas).expect("mkdir schemas");
        Dirs {
            _tmp: tmp,
            root,
            configs,
            schemas,
        }
    }

    fn schema(&self, name: &str, schema: &serde_json::Value) {
        std::fs::write(
            self.schemas.join(format!("{name}.schema.json")),
            serde_json::to_vec_pretty(schema).expect("json"),
        )
        .expect("write schema");
    }

    fn config(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.configs.join(format!("{name}.toml"));
        std::fs::write(&path, bytes).expect("write config");
        path
    }

    /// Loads schema `name` with a fresh cache, bounded.
    fn load(
        &self,
        name: &str,
    ) -> Result<std::sync::Arc<hotconf::pipeline::schema::Schema>, Rejection> {
        let dir = self.schemas.clone();
        let name = name.to_string();
        bounded(&format!("load schema {name}"), DEADLINE, move || {
            SchemaCache::new().load(&dir, &name)
        })
    }

    /// Parses and validates `text` against schema `name`, bounded.
    fn evaluate(&self, name: &str, text: impl Into<Vec<u8>>) -> Result<(), Rejection> {
        let schema = self
            .load(name)
            .unwrap_or_else(|r| panic!("schema {name} should load: {r}"));
        let bytes = text.into();
        let label = format!("{name}.toml");
        bounded(&format!("evaluate {name}"), DEADLINE, move || {
            pipeline::evaluate(&label, &bytes, &schema).map(|_| ())
        })
    }
}

/// Creates a named pipe: opening it for reading blocks until a writer comes,
/// so any code that tries to read it hangs and misses its deadline.
fn mkfifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("no NUL in path");
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o644) };
    assert_eq!(rc, 0, "mkfifo {}", path.display());
}

/// A sparse file of `len` bytes: instant to make, ruinous to read whole.
fn sparse(path: &Path, len: u64) {
    let f = std::fs::File::create(path).expect("create sparse file");
    f.set_len(len).expect("set_len");
}

// ---------------------------------------------------------------------------
// Nesting depth

#[test]
fn two_hundred_thousand_nested_arrays_are_rejected() {
    let n = 200_000;
    let text = format!("# deep\na = {}1{}\n", "[".repeat(n), "]".repeat(n));
    let r = rejected("arrays", text.into_bytes());
    assert_at(&r, Code::Parse, 2, None);
    assert_no_quote(&r, "[[[[");
}

#[test]
fn fifty_thousand_nested_inline_tables_are_rejected() {
    let n = 50_000;
    let text = format!("a = {}1{}\n", "{ b = ".repeat(n), " }".repeat(n));
    let r = rejected("inline-tables", text.into_bytes());
    assert_at(&r, Code::Parse, 1, None);
    assert_no_quote(&r, "{ b = { b");
}

#[test]
fn dotted_key_with_3000_segments_is_rejected() {
    let text = format!("x = 1\n{} = 1\n", dotted(3000));
    let r = rejected("dotted-key", text.into_bytes());
    assert_at(&r, Code::Parse, 2, None);
    assert_no_quote(&r, "k1.k2.k3");
}

#[test]
fn table_header_nested_thousands_deep_is_rejected() {
    for (what, open, close) in [("header", "[", "]"), ("array-header", "[[", "]]")] {
        let text = format!("x = 1\n\n{open}{}{close}\ny = 2\n", dotted(5000));
        let r = rejected(what, text.into_bytes());
        assert_at(&r, Code::Parse, 3, Some(1));
        assert_no_quote(&r, "k1.k2.k3");
    }
}

#[test]
fn staircase_of_table_headers_is_rejected() {
    // [k0] / [k0.k1] / [k0.k1.k2] ... each header deeper than the last.
    let mut text = String::new();
    for depth in 1..=MAX_DEPTH + 10 {
        text.push_str(&format!("[{}]\nv = {depth}\n", dotted(depth)));
    }
    let r = rejected("staircase", text.into_bytes());
    // The key `v` under the 64-segment header (line 2 * MAX_DEPTH) is the
    // first value deeper than the limit.
    assert_at(&r, Code::Parse, 2 * MAX_DEPTH, None);
}

/// `toml` caps brackets and key segments at 80 *each*, not their sum: an
/// inline table nested 80 deep may hold an 80-segment dotted key at every
/// level, 6,400 tables deep from 25 KiB. `toml`'s own typed
/// deserialization (`toml::Table`) overflows a 2 MiB stack on ~1,600 of
/// those levels, as would any recursive walk after it.
#[test]
fn dotted_keys_inside_nested_inline_tables_are_rejected() {
    let key = dotted(79);
    let levels = 80;
    let text = format!(
        "{}x = 1{}\n",
        format!("{key} = {{ ").repeat(levels),
        " }".repeat(levels)
    );
    let r = rejected("dotted-inline", text.into_bytes());
    assert_at(&r, Code::Parse, 1, None);
    assert_no_quote(&r, "k1.k2.k3");
}

/// The same, with every construct `toml` allows at its own maximum: a
/// 79-segment header, a 79-segment dotted key, then arrays and inline tables
/// (with dotted keys of their own) alternating, 80 deep.
#[test]
fn every_nesting_construct_at_tomls_own_maximum_is_rejected() {
    let key = dotted(79);
    let mut value = String::from("1");
    for level in 0..79 {
        value = if level % 2 == 0 {
            format!("[{value}]")
        } else {
            format!("{{ {key} = {value} }}")
        };
    }
    let text = format!("[{key}]\n{key} = {value}\n");
    let r = rejected("all-constructs", text.into_bytes());
    assert_at(&r, Code::Parse, 1, None);
}

/// A byte-order mark before a header must not hide the header's depth from
/// the limit: lines of 60 levels each under a 60-level header.
#[test]
fn header_after_a_byte_order_mark_still_counts() {
    let text = format!(
        "\u{feff}[{}]\n{} = {}1{}\n",
        dotted(60),
        dotted(30),
        "[".repeat(30),
        "]".repeat(30)
    );
    let r = rejected("bom-header", text.into_bytes());
    assert_eq!(r.code, Code::Parse, "{r}");
    assert!(r.problems.iter().all(|p| p.line >= Some(1)), "{r}");
}

/// The deepest document the limit allows goes through every layer — parse,
/// conversion, schema validation, locating the violation in the source — on
/// a 2 MiB stack; one level more is `E_PARSE`.
#[test]
fn deepest_allowed_document_is_validated_and_located() {
    let dirs = Dirs::new();
    // Every level may be an object, an array or an integer: a string at the
    // bottom is the one violation.
    dirs.schema(
        "deep",
        &json!({
            "$defs": {"n": {
                "type": ["object", "array", "integer"],
                "additionalProperties": {"$ref": "#/$defs/n"},
                "items": {"$ref": "#/$defs/n"}
            }},
            "$ref": "#/$defs/n"
        }),
    );
    // Depth = header segments + dotted key segments + arrays.
    let (h, d) = (20, 20);
    let build = |arrays: usize| {
        let key_line = format!("{} = {}", dotted(d), "[".repeat(arrays));
        let column = key_line.chars().count() + 1;
        let text = format!("[{}]\n{key_line}\"x\"{}\n", dotted(h), "]".repeat(arrays));
        let pointer = format!(
            "/{}/{}{}",
            (0..h)
                .map(|i| format!("k{i}"))
                .collect::<Vec<_>>()
                .join("/"),
            (0..d)
                .map(|i| format!("k{i}"))
                .collect::<Vec<_>>()
                .join("/"),
            "/0".repeat(arrays)
        );
        (text, column, pointer)
    };

    let (text, column, pointer) = build(MAX_DEPTH - h - d);
    let r = dirs
        .evaluate("deep", text)
        .expect_err("the string at the bottom violates the schema");
    assert_eq!(r.code, Code::Schema, "{r}");
    assert_eq!(r.problems.len(), 1, "{r}");
    let p = &r.problems[0];
    assert_eq!(p.pointer, pointer);
    assert_eq!((p.line, p.column), (Some(2), Some(column)), "{r}");

    let (text, _, _) = build(MAX_DEPTH - h - d + 1);
    let r = dirs.evaluate("deep", text).expect_err("one level too deep");
    assert_at(&r, Code::Parse, 2, None);
}

/// One segment of a key: bare, or quoted with characters the depth scan
/// must not count (dots, brackets, braces, `#`, escaped quotes).
fn random_key(rng: &mut Rng, i: usize) -> String {
    match rng.below(4) {
        0 => format!("\"q.{i}[{{#}}]\\\"\""),
        1 => format!("'l.{i}]]'"),
        _ => format!("k{i}"),
    }
}

/// A dotted key of `n` segments, with random spacing around the dots.
fn random_dotted(rng: &mut Rng, n: usize) -> String {
    let sep = [".", " . ", ".  "];
    let sep = sep[rng.below(sep.len())];
    (0..n)
        .map(|i| random_key(rng, i))
        .collect::<Vec<_>>()
        .join(sep)
}

/// A scalar whose text holds characters the depth scan must not count.
fn random_scalar(rng: &mut Rng) -> &'static str {
    const SCALARS: [&str; 6] = [
        "1",
        "\"[[{ . , }]]\"",
        "'}]#['",
        "\"\"\"multi\n[line]{\n\"\"\"",
        "'''raw ]]\n}}'''",
        "1979-05-27T07:32:00Z",
    ];
    SCALARS[rng.below(SCALARS.len())]
}

/// A document whose deepest value is exactly `depth` keys and indices deep,
/// built from a random mix of header segments, dotted keys, arrays and
/// inline tables, decorated with comments, strings and quoted keys that
/// look like nesting.
fn random_deep_document(rng: &mut Rng, depth: usize) -> String {
    let header = rng.below(depth.min(20));
    let mut left = depth - header;
    let key = 1 + rng.below(left.min(10));
    left -= key;
    // Innermost first: (is an array, key segments of an inline table).
    let mut wrappers = Vec::new();
    while left > 0 {
        if rng.below(2) == 0 {
            wrappers.push((true, 0));
            left -= 1;
        } else {
            let n = 1 + rng.below(left.min(5));
            wrappers.push((false, n));
            left -= n;
        }
    }
    let mut value = random_scalar(rng).to_string();
    for (array, n) in wrappers {
        value = if array {
            if rng.below(2) == 0 {
                format!(
                    "[\n  # ]] }} [[\n  {},\n  {value}, # ]\n]",
                    random_scalar(rng)
                )
            } else {
                format!("[{}, {value}]", random_scalar(rng))
            }
        } else if rng.below(2) == 0 {
            format!(
                "{{ x = {}, {} = {value} }}",
                random_scalar(rng),
                random_dotted(rng, n)
            )
        } else {
            // TOML 1.1: newlines, comments and a trailing comma inside.
            format!(
                "{{ # }}]\n  x = {},\n  {} = {value}, # {{[\n}}",
                random_scalar(rng),
                random_dotted(rng, n)
            )
        };
    }
    let mut text = String::from("# [[not.a.header]]\ntitle = \"[x.y.z]\"\n");
    if header > 0 {
        text.push_str(&format!("\n[{}] # [a.b.c.d]\n", random_dotted(rng, header)));
    }
    text.push_str(&format!("{} = {value}\n", random_dotted(rng, key)));
    text
}

/// Depth of a JSON value: keys and indices on the path to its deepest
/// value (without recursion).
fn json_depth(v: &serde_json::Value) -> usize {
    let mut deepest = 0;
    let mut work = vec![(v, 0usize)];
    while let Some((v, d)) = work.pop() {
        deepest = deepest.max(d);
        match v {
            serde_json::Value::Object(m) => work.extend(m.values().map(|c| (c, d + 1))),
            serde_json::Value::Array(a) => work.extend(a.iter().map(|c| (c, d + 1))),
            _ => {}
        }
    }
    deepest
}

/// The depth limit is exact for documents without arrays of tables: every
/// document up to [`MAX_DEPTH`] deep is accepted (brackets in strings,
/// comments and quoted keys do not count), every deeper one is `E_PARSE`.
#[test]
fn depth_limit_is_exact_on_random_documents() {
    let (mut accepted, mut refused) = (0, 0);
    for seed in 0..SEEDS {
        let mut rng = Rng::new(seed ^ 0xdeed);
        let depth = if seed % 5 == 0 {
            1 + rng.below(MAX_DEPTH)
        } else {
            MAX_DEPTH - 2 + rng.below(5)
        };
        let text = random_deep_document(&mut rng, depth);
        let what = format!("depth {depth}, seed {seed}");
        let shown = text.clone();
        let verdict = bounded(&what, DEADLINE, move || {
            document::parse("deep.toml", text.as_bytes()).map(|p| json_depth(&p.value))
        });
        match verdict {
            Ok(got) => {
                assert!(depth <= MAX_DEPTH, "{what}: accepted, too deep:\n{shown}");
                assert_eq!(got, depth, "{what}: generator out of step:\n{shown}");
                accepted += 1;
            }
            Err(r) => {
                assert!(depth > MAX_DEPTH, "{what}: refused: {r}\n{shown}");
                assert_eq!(r.code, Code::Parse, "{what}: {r}");
                assert!(r.problems[0].line.is_some_and(|l| l >= 1), "{r}");
                refused += 1;
            }
        }
    }
    println!("random depths: {accepted} accepted, {refused} refused");
    assert!(accepted > 100 && refused > 100, "{accepted} / {refused}");
}

// ---------------------------------------------------------------------------
// Size

#[test]
fn ten_mib_file_is_rejected_by_size() {
    let dirs = Dirs::new();
    let path = dirs.config("big", &vec![b'#'; 10 * 1024 * 1024]);
    let r = bounded("10 MiB", DEADLINE, move || {
        document::read_capped(&path, DEFAULT_MAX_FILE_SIZE, "big.toml")
    })
    .expect_err("10 MiB is over the 4 MiB default");
    assert_eq!(r.code, Code::TooLarge, "{r}");
}

/// 10 GiB, sparse: reading it whole would take minutes and 10 GiB of memory.
#[test]
fn sparse_10_gib_file_is_rejected_without_being_read() {
    let dirs = Dirs::new();
    let path = dirs.configs.join("huge.toml");
    sparse(&path, 10 << 30);
    let r = bounded("10 GiB", DEADLINE, move || {
        document::read_capped(&path, DEFAULT_MAX_FILE_SIZE, "huge.toml")
    })
    .expect_err("10 GiB is over the limit");
    assert_eq!(r.code, Code::TooLarge, "{r}");
}

/// `/dev/zero` reports a size of 0 and never ends: the cap must hold while
/// reading, not only from the metadata.
#[test]
fn endless_device_is_refused_in_bounded_time() {
    let dirs = Dirs::new();
    let path = dirs.configs.join("zero.toml");
    std::os::unix::fs::symlink("/dev/zero", &path).expect("symlink");
    let r = bounded("/dev/zero", DEADLINE, move || {
        document::read_capped(&path, DEFAULT_MAX_FILE_SIZE, "zero.toml")
    })
    .expect_err("/dev/zero is not a document");
    assert!(matches!(r.code, Code::Io | Code::TooLarge), "{r}");
}

/// A named pipe nobody writes to: opening it for reading would block the
/// reloader forever.
#[test]
fn named_pipe_is_refused_without_blocking() {
    let dirs = Dirs::new();
    let path = dirs.configs.join("pipe.toml");
    mkfifo(&path);
    let r = bounded("fifo", DEADLINE, move || {
        document::read_capped(&path, DEFAULT_MAX_FILE_SIZE, "pipe.toml")
    })
    .expect_err("a FIFO is not a document");
    assert_eq!(r.code, Code::Io, "{r}");
}

// ---------------------------------------------------------------------------
// Encoding

#[test]
fn nul_bytes_are_rejected_at_their_line() {
    let cases: [(&str, &[u8], usize, usize); 4] = [
        ("in a string", b"a = 1\nb = \"x\0y\"\n", 2, 7),
        ("in a comment", b"a = 1\n\n# note \0\n", 3, 8),
        ("in a key", b"a\0b = 1\n", 1, 2),
        ("alone", b"\0", 1, 1),
    ];
    for (what, bytes, line, column) in cases {
        let r = rejected(what, bytes.to_vec());
        assert_at(&r, Code::Encoding, line, Some(column));
    }
}

#[test]
fn invalid_utf8_is_rejected_at_its_line() {
    let cases: [(&str, &[u8], usize, usize); 7] = [
        ("at the start", b"\xff = 1\n", 1, 1),
        (
            "in the middle",
            b"a = 1\nb = 2\n\xc3\x28 = 3\nc = 4\n",
            3,
            1,
        ),
        ("at the end", b"a = 1\nb = 2\nc = \"\xe2\x82", 3, 6),
        ("in a string", b"a = 1\ns = \"\xc3\xa9t\xfe\"\n", 2, 8),
        ("in a comment", b"a = 1\n\n# caf\xc3\xa9 \xc0\xaf\n", 3, 8),
        ("a surrogate", b"a = \"\xed\xa0\x80\"\n", 1, 6),
        (
            "in a multi-line string",
            b"s = \"\"\"\nok\n\x80\n\"\"\"\n",
            3,
            1,
        ),
    ];
    for (what, bytes, line, column) in cases {
        let r = rejected(what, bytes.to_vec());
        assert_at(&r, Code::Encoding, line, Some(column));
    }
}

// ---------------------------------------------------------------------------
// Random input

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A valid document to mutate: a bit of every construct.
const SEED_DOCUMENT: &str = r#"# service
title = "hotconf"
port = 8080
ratio = 0.75
enabled = true
when = 1979-05-27T07:32:00Z
day = 1979-05-27
tags = ["a", "b", 'c', """multi
line"""]
point = { x = 1, y.z = [1, 2, { w = 3 }] }
a.b.c = 'literal'

[server]
listen = "127.0.0.1:8080"
timeouts = { read_ms = 500, write_ms = 500 }

[[backend]]
url = "http://a"

[[backend]]
url = "http://b"
weights = [[1, 2], [3, 4]]
"#;

const SEEDS: u64 = 500;

/// Accepted, or rejected as `E_ENCODING`/`E_PARSE` with a line on every
/// problem; anything else (a panic, a hang, another code) fails.
fn assert_sane_verdict(what: &str, bytes: Vec<u8>) {
    let label = format!("{what}.toml");
    let verdict = bounded(what, DEADLINE, move || {
        document::parse(&label, &bytes).map(|_| ())
    });
    if let Err(r) = verdict {
        assert!(
            matches!(r.code, Code::Encoding | Code::Parse),
            "{what}: {r}"
        );
        assert!(
            r.problems.iter().all(|p| p.line.is_some_and(|l| l >= 1)),
            "{what}: a problem without a line: {r}"
        );
    }
}

#[test]
fn random_bytes_get_a_verdict() {
    for seed in 0..SEEDS {
        let mut rng = Rng::new(seed);
        let bytes: Vec<u8> = (0..2000).map(|_| rng.next() as u8).collect();
        assert_sane_verdict(&format!("random bytes, seed {seed}"), bytes);
    }
}

/// Random text from TOML's own punctuation: reaches far deeper into the
/// parser than random bytes, which fail UTF-8 at once.
#[test]
fn random_toml_like_text_gets_a_verdict() {
    const ALPHABET: &[u8] = b"[]{}[]{}==..,,\"\"''#\n\n  \tab1_-+:TZe\\";
    for seed in 0..SEEDS {
        let mut rng = Rng::new(seed ^ 0xabcd);
        let bytes: Vec<u8> = (0..2000)
            .map(|_| ALPHABET[rng.below(ALPHABET.len())])
            .collect();
        assert_sane_verdict(&format!("random text, seed {seed}"), bytes);
    }
}

#[test]
fn mutated_valid_documents_get_a_verdict() {
    assert!(
        document::parse("seed.toml", SEED_DOCUMENT.as_bytes()).is_ok(),
        "the seed document must be valid"
    );
    const INSERTS: &[u8] = b"[]{}=.,\"'#\n\0\xff\\";
    for seed in 0..SEEDS {
        let mut rng = Rng::new(seed ^ 0x5eed);
        let mut bytes = SEED_DOCUMENT.as_bytes().to_vec();
        for _ in 0..1 + rng.below(8) {
            let at = rng.below(bytes.len());
            match rng.below(5) {
                0 => {
                    bytes.remove(at);
                }
                1 => bytes.insert(at, INSERTS[rng.below(INSERTS.len())]),
                2 => bytes[at] = rng.next() as u8,
                3 => {
                    // Duplicate a slice (repeats brackets, keys, headers).
                    let end = (at + 1 + rng.below(40)).min(bytes.len());
                    let slice = bytes[at..end].to_vec();
                    bytes.splice(at..at, slice);
                }
                _ => {
                    let end = (at + 1 + rng.below(20)).min(bytes.len());
                    bytes.drain(at..end);
                }
            }
        }
        assert_sane_verdict(&format!("mutation, seed {seed}"), bytes);
    }
}

// ---------------------------------------------------------------------------
// Large but legitimate

/// 100 tables of 1,000 keys each, about 3 MiB.
fn hundred_thousand_keys() -> String {
    let mut text = String::with_capacity(3 << 20);
    for t in 0..100 {
        text.push_str(&format!("[section_{t:03}]\n"));
        for k in 0..1000 {
            text.push_str(&format!(
                "key_{k:04} = \"value value value {t:03}{k:04}\"\n"
            ));
        }
    }
    assert!(text.len() > 3 << 20 && (text.len() as u64) < DEFAULT_MAX_FILE_SIZE);
    text
}

#[test]
fn three_mib_document_with_100_000_keys_is_accepted_in_bounded_time() {
    let dirs = Dirs::new();
    dirs.schema(
        "many",
        &json!({
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "additionalProperties": {"type": "string", "maxLength": 64}
            }
        }),
    );
    dirs.evaluate("many", hundred_thousand_keys())
        .expect("valid under its schema");
}

/// The rejection path locates every violation in the source: 100,000 of
/// them must not make it quadratic.
#[test]
fn three_mib_document_with_100_000_violations_is_rejected_in_bounded_time() {
    let dirs = Dirs::new();
    dirs.schema(
        "many",
        &json!({
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "additionalProperties": {"type": "integer"}
            }
        }),
    );
    let started = Instant::now();
    let r = dirs
        .evaluate("many", hundred_thousand_keys())
        .expect_err("every value is a string, not an integer");
    assert_eq!(r.code, Code::Schema, "{r}");
    let first = &r.problems[0];
    assert_eq!(first.pointer, "/section_000/key_0000");
    assert_eq!((first.line, first.column), (Some(2), Some(12)), "{r:.300}");
    println!(
        "100,000 violations: {} problems reported in {:?}",
        r.problems.len(),
        started.elapsed()
    );
}

/// 100,000 keys in one table, none of them allowed: one
/// `additionalProperties` error naming them all.
#[test]
fn one_table_of_100_000_extra_keys_is_rejected_in_bounded_time() {
    let dirs = Dirs::new();
    dirs.schema(
        "flat",
        &json!({
            "type": "object",
            "properties": {"name": {"type": "string"}},
            "additionalProperties": false
        }),
    );
    let mut text = String::from("name = \"flat\"\n");
    for k in 0..100_000 {
        text.push_str(&format!("key_{k:06} = {k}\n"));
    }
    let r = dirs.evaluate("flat", text).expect_err("every key is extra");
    assert_eq!(r.code, Code::Schema, "{r:.300}");
    let first = &r.problems[0];
    assert_eq!(first.pointer, "/key_000000");
    assert_eq!((first.line, first.column), (Some(2), Some(1)), "{r:.300}");
}

/// 199,998 violations on one 1.2 MB line (as many as the value limit lets
/// through): locating them must not rescan the line for each. 200,000 items
/// are refused before parsing.
#[test]
fn one_line_of_200_000_violations_is_rejected_in_bounded_time() {
    let dirs = Dirs::new();
    dirs.schema(
        "line",
        &json!({"type": "object", "properties": {"a": {"items": {"type": "string"}}}}),
    );
    // `a =` and `[` count one each, then one per comma.
    let text = format!("a = [{}]\n", "12345,".repeat(MAX_VALUES - 2));
    let r = dirs
        .evaluate("line", text)
        .expect_err("numbers, not strings");
    assert_eq!(r.code, Code::Schema, "{r:.300}");
    let first = &r.problems[0];
    assert_eq!(first.pointer, "/a/0");
    assert_eq!((first.line, first.column), (Some(1), Some(6)), "{r:.300}");
    let text = format!("a = [{}]\n", "12345,".repeat(200_000));
    let r = dirs.evaluate("line", text).expect_err("too many values");
    assert_eq!(r.code, Code::TooLarge, "{r:.300}");
}

/// 600,000 tables in one array, from 3.6 MB of `[[t]]` headers, are
/// refused before parsing (the value limit); 200,000 (at the limit) are
/// parsed and judged.
#[test]
fn six_hundred_thousand_array_tables_are_bounded() {
    let dirs = Dirs::new();
    dirs.schema(
        "aot",
        &json!({"properties": {"t": {"items": {"type": "object", "required": ["x"]}}}}),
    );
    let text = "[[t]]\n".repeat(MAX_VALUES);
    let r = dirs.evaluate("aot", text).expect_err("no table has x");
    assert_eq!(r.code, Code::Schema, "{r:.300}");
    assert_eq!(r.problems[0].line, Some(1), "{r:.300}");
    let text = "[[t]]\n".repeat(600_000);
    let r = dirs.evaluate("aot", text).expect_err("too many values");
    assert_eq!(r.code, Code::TooLarge, "{r:.300}");
    assert_eq!(r.problems[0].line, Some(MAX_VALUES + 1), "{r:.300}");
}

/// Keys that need escaping in a JSON pointer, or look like one, are still
/// located exactly.
#[test]
fn awkward_keys_are_located() {
    let dirs = Dirs::new();
    dirs.schema(
        "keys",
        &json!({"additionalProperties": {"additionalProperties": {"type": "integer"}}}),
    );
    let text = "[\"a/b\"]\n\"~0\" = \"x\"\n\"\" = \"x\"\n\"c.d\" = \"x\"\n\"é\\\"q\" = \"x\"\n";
    let r = dirs
        .evaluate("keys", text)
        .expect_err("strings, not integers");
    let got: Vec<(&str, Option<usize>, Option<usize>)> = r
        .problems
        .iter()
        .map(|p| (p.pointer.as_str(), p.line, p.column))
        .collect();
    assert_eq!(
        got,
        vec![
            ("/a~1b/~00", Some(2), Some(8)),
            ("/a~1b/", Some(3), Some(6)),
            ("/a~1b/c.d", Some(4), Some(9)),
            ("/a~1b/é\"q", Some(5), Some(10)),
        ],
        "{r}"
    );
}

// ---------------------------------------------------------------------------
// Schemas

/// Textbook catastrophic patterns against a 30,000-character string that
/// almost matches: a located `E_SCHEMA`, in linear time.
#[test]
fn catastrophic_backtracking_pattern_is_bounded() {
    for (i, pattern) in [
        r"^(a+)+$",
        r"^(a|aa)+$",
        r"^(\w+\s?)*$",
        r"^([a-z0-9]+)*@x$",
    ]
    .into_iter()
    .enumerate()
    {
        let dirs = Dirs::new();
        dirs.schema(
            "re",
            &json!({
                "type": "object",
                "properties": {"name": {"type": "string", "pattern": pattern}}
            }),
        );
        let text = format!("# {i}\nname = \"{}!\"\n", "a".repeat(30_000));
        let r = dirs
            .evaluate("re", text)
            .expect_err("the string does not match");
        assert_eq!(r.code, Code::Schema, "{pattern}: {r:.300}");
        let p = &r.problems[0];
        assert_eq!(p.pointer, "/name", "{pattern}");
        assert_eq!(
            (p.line, p.column),
            (Some(2), Some(8)),
            "{pattern}: {r:.300}"
        );
    }
}

/// Lookaround and backreferences can only run on a backtracking engine,
/// which stops each match after a million steps (~20 ms) — per string, so a
/// document of many strings would take minutes. hotconf runs schema regexes
/// on a linear-time engine instead, and refuses such a schema when it loads;
/// likewise a pattern too big to compile.
#[test]
fn backtracking_only_patterns_are_refused_when_the_schema_loads() {
    let dirs = Dirs::new();
    let schemas = [
        (
            "backref",
            json!({"properties": {"a": {"pattern": r"^(a|a)+\1$"}}}),
        ),
        (
            "lookahead",
            json!({"properties": {"a": {"pattern": r"^(?=(a+)+$)a*c$"}}}),
        ),
        (
            "lookbehind",
            json!({"properties": {"a": {"pattern": r"(?<!x)a$"}}}),
        ),
        (
            "pattern-properties",
            json!({"patternProperties": {r"^(a|a)+\1$": {}}}),
        ),
        // Compiles to more than the regex crate's 10 MiB program limit.
        (
            "huge-repetition",
            json!({"properties": {"a": {"pattern": r"^((a{1000}){1000}){1000}$"}}}),
        ),
    ];
    for (name, schema) in schemas {
        dirs.schema(name, &schema);
        let r = dirs
            .load(name)
            .map(|_| ())
            .expect_err(&format!("{name}: must be refused"));
        assert_eq!(r.code, Code::SchemaInvalid, "{name}: {r}");
    }
}

/// Many distinct strings (the validator remembers unfinished subjects, so
/// identical ones would prove nothing), each a near miss of a catastrophic
/// pattern: the cost stays bounded for the whole document.
#[test]
fn many_catastrophic_strings_are_bounded() {
    let dirs = Dirs::new();
    dirs.schema(
        "re",
        &json!({
            "type": "object",
            "additionalProperties": {"type": "string", "pattern": r"^(a+)+$"}
        }),
    );
    let mut text = String::new();
    for i in 0..10_000 {
        text.push_str(&format!("k{i} = \"{}b{i}\"\n", "a".repeat(200)));
    }
    let r = dirs.evaluate("re", text).expect_err("no string matches");
    assert_eq!(r.code, Code::Schema, "{r:.300}");
}

/// A target outside the schema directory, with content that would make the
/// document valid if it were used.
fn outside_dir(dirs: &Dirs) -> PathBuf {
    let outside = dirs.root.join("outside");
    std::fs::create_dir(&outside).expect("mkdir outside");
    std::fs::write(outside.join("x.json"), b"{}").expect("write outside schema");
    mkfifo(&outside.join("fifo.json"));
    // schemas/sub exists so that `sub/../../` resolves on disk too.
    std::fs::create_dir(dirs.schemas.join("sub")).expect("mkdir sub");
    outside
}

/// `$ref`s that leave the schema directory, by every spelling: rejected as
/// `E_SCHEMA_INVALID`, and nothing outside is read — the valid `x.json`
/// outside would have made the document pass, and opening the FIFO would
/// have blocked past the deadline.
#[test]
fn ref_outside_the_schema_dir_is_rejected_unread() {
    let dirs = Dirs::new();
    let outside = outside_dir(&dirs);
    let abs = outside.join("x.json");
    let abs_fifo = outside.join("fifo.json");
    let refs = [
        ("parent", json!({"$ref": "../outside/x.json"})),
        ("parent-fifo", json!({"$ref": "../outside/fifo.json"})),
        ("dotdot-inside", json!({"$ref": "sub/../../outside/x.json"})),
        ("absolute", json!({"$ref": abs.to_str()})),
        ("absolute-fifo", json!({"$ref": abs_fifo.to_str()})),
        (
            "file-url",
            json!({"$ref": format!("file://{}", abs.display())}),
        ),
        ("etc-passwd", json!({"$ref": "file:///etc/passwd"})),
        (
            "rebased-id",
            json!({"$id": format!("file://{}/", outside.display()), "$ref": "x.json"}),
        ),
        (
            "nested-ref",
            json!({"properties": {"a": {"$ref": "../outside/x.json#/properties"}}}),
        ),
        ("percent-encoded", json!({"$ref": "%2e%2e/outside/x.json"})),
    ];
    for (name, schema) in refs {
        // Had the outside `{}` been read, the schema would have loaded.
        dirs.schema(name, &schema);
        let r = dirs
            .load(name)
            .map(|_| ())
            .expect_err(&format!("{name}: a $ref outside must not load"));
        assert_eq!(r.code, Code::SchemaInvalid, "{name}: {r}");
    }
}

/// A symlink inside the schema directory that resolves outside it is
/// outside: refused, whether it is a referenced file or the schema itself.
#[test]
fn symlinks_out_of_the_schema_dir_are_refused() {
    let dirs = Dirs::new();
    let outside = outside_dir(&dirs);
    std::os::unix::fs::symlink(outside.join("x.json"), dirs.schemas.join("link.json"))
        .expect("symlink");
    dirs.schema("via-link", &json!({"$ref": "link.json"}));
    std::os::unix::fs::symlink(
        outside.join("x.json"),
        dirs.schemas.join("linked.schema.json"),
    )
    .expect("symlink");
    for name in ["via-link", "linked"] {
        let r = dirs
            .load(name)
            .map(|_| ())
            .expect_err(&format!("{name}: resolves outside"));
        assert_eq!(r.code, Code::SchemaInvalid, "{name}: {r}");
    }
}

/// A chain of 1,000 files, each referencing the next: refused past the
/// closure's file limit, in bounded time.
#[test]
fn a_thousand_file_ref_chain_is_refused() {
    let dirs = Dirs::new();
    for i in 0..1000 {
        std::fs::write(
            dirs.schemas.join(format!("c{i}.json")),
            format!(
                r#"{{"properties": {{"n": {{"$ref": "c{}.json"}}}}}}"#,
                i + 1
            ),
        )
        .expect("write");
    }
    std::fs::write(dirs.schemas.join("c1000.json"), b"{}").expect("write");
    dirs.schema("chain", &json!({"$ref": "c0.json"}));
    let r = dirs.load("chain").map(|_| ()).expect_err("too many files");
    assert_eq!(r.code, Code::SchemaInvalid, "{r}");
}

/// Nothing is ever fetched: a listening port sees no connection.
#[test]
fn ref_to_a_url_fetches_nothing() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let dirs = Dirs::new();
    let refs = [
        (
            "http",
            json!({"$ref": format!("http://127.0.0.1:{port}/x.json")}),
        ),
        (
            "https",
            json!({"$ref": format!("https://127.0.0.1:{port}/x.json")}),
        ),
        (
            "rebased-id",
            json!({"$id": format!("http://127.0.0.1:{port}/s/"), "$ref": "x.json"}),
        ),
        (
            "meta-schema",
            json!({"$schema": format!("http://127.0.0.1:{port}/meta")}),
        ),
        ("unreachable", json!({"$ref": "http://127.0.0.1:1/x"})),
    ];
    for (name, schema) in refs {
        dirs.schema(name, &schema);
        let r = dirs
            .load(name)
            .map(|_| ())
            .expect_err(&format!("{name}: a remote $ref must not load"));
        assert_eq!(r.code, Code::SchemaInvalid, "{name}: {r}");
    }
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        Ok((_, from)) => panic!("something connected to the listener from {from}"),
        Err(e) => panic!("accept: {e}"),
    }
}

/// `$ref` cycles, within a file and across files, terminate.
#[test]
fn ref_cycles_terminate() {
    let dirs = Dirs::new();
    dirs.schema("self", &json!({"type": "object", "allOf": [{"$ref": "#"}]}));
    dirs.schema(
        "mutual",
        &json!({
            "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}},
            "$ref": "#/$defs/a"
        }),
    );
    std::fs::write(
        dirs.schemas.join("ping.json"),
        br#"{"properties": {"p": {"$ref": "pong.json"}}}"#,
    )
    .expect("write");
    std::fs::write(
        dirs.schemas.join("pong.json"),
        br#"{"properties": {"p": {"$ref": "ping.json"}}}"#,
    )
    .expect("write");
    dirs.schema("files", &json!({"$ref": "ping.json"}));
    for name in ["self", "mutual", "files"] {
        // Any verdict will do, as long as there is one.
        if let Ok(schema) = dirs.load(name) {
            let label = format!("{name}.toml");
            let _ = bounded(name, DEADLINE, move || {
                pipeline::evaluate(&label, b"p = { p = { p = 1 } }\n", &schema).map(|_| ())
            });
        }
    }
}

#[test]
fn hostile_schema_files_are_refused() {
    let dirs = Dirs::new();
    // Deeper than serde_json's recursion limit.
    std::fs::write(
        dirs.schemas.join("deep.schema.json"),
        format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
    )
    .expect("write");
    // Deep but parseable: 120 nested `items`.
    let mut nested = json!({"type": "integer"});
    for _ in 0..120 {
        nested = json!({"type": "array", "items": nested});
    }
    dirs.schema("nested", &nested);
    sparse(&dirs.schemas.join("huge.schema.json"), 10 << 30);
    mkfifo(&dirs.schemas.join("pipe.schema.json"));
    std::fs::write(dirs.schemas.join("nul.schema.json"), b"{\"type\":\0}").expect("write");
    std::fs::write(
        dirs.schemas.join("latin1.schema.json"),
        b"{\"title\":\"caf\xe9\"}",
    )
    .expect("write");

    for name in ["deep", "huge", "pipe", "nul", "latin1"] {
        let r = dirs
            .load(name)
            .map(|_| ())
            .expect_err(&format!("{name}: must be refused"));
        assert!(
            matches!(r.code, Code::SchemaInvalid | Code::TooLarge | Code::Io),
            "{name}: {r}"
        );
    }
    // The nested one may load; validating against it must be bounded.
    if let Ok(schema) = dirs.load("nested") {
        let _ = bounded("nested schema", DEADLINE, move || {
            pipeline::evaluate("nested.toml", b"a = [[[1]]]\n", &schema).map(|_| ())
        });
    }
}

// ---------------------------------------------------------------------------
// The real binary

/// Runs `hotconf check` with a deadline; returns (exit code, stdout, stderr).
fn hotconf_check(dirs: &Dirs, extra: &[&str]) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hotconf"))
        .arg("check")
        .arg("--config-dir")
        .arg(&dirs.configs)
        .arg("--schema-dir")
        .arg(&dirs.schemas)
        .args(extra)
        .current_dir(&dirs.root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hotconf");
    // Read the pipes on threads so a chatty child cannot block on them.
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_t = thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut s);
        s
    });
    let err_t = thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("hotconf check did not finish within 30 s");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let stdout = out_t.join().expect("stdout thread");
    let stderr = err_t.join().expect("stderr thread");
    (status.code().unwrap_or(-1), stdout, stderr)
}

#[test]
fn check_binary_reports_every_hostile_document() {
    let dirs = Dirs::new();
    let n = 200_000;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "arrays",
            format!("a = {}1{}\n", "[".repeat(n), "]".repeat(n)).into_bytes(),
        ),
        (
            "inline",
            format!("a = {}1{}\n", "{ b = ".repeat(50_000), " }".repeat(50_000)).into_bytes(),
        ),
        ("dotted", format!("{} = 1\n", dotted(3000)).into_bytes()),
        ("nul", b"a = 1\nb = \"\0\"\n".to_vec()),
        ("latin1", b"a = 1\nb = \"caf\xe9\"\n".to_vec()),
        ("nan", b"a = 1\nb = nan\n".to_vec()),
    ];
    for (name, bytes) in &cases {
        dirs.schema(name, &json!({"type": "object"}));
        dirs.config(name, bytes);
    }
    dirs.schema("huge", &json!({"type": "object"}));
    sparse(&dirs.configs.join("huge.toml"), 10 << 30);
    dirs.schema("loop", &json!({"type": "object"}));
    std::os::unix::fs::symlink("loop.toml", dirs.configs.join("loop.toml")).expect("symlink");

    let (code, stdout, stderr) = hotconf_check(&dirs, &[]);
    let all = format!("{stdout}{stderr}");
    assert_eq!(code, 1, "{all:.2000}");
    for (file, want) in [
        ("arrays.toml:1:", "E_PARSE"),
        ("inline.toml:1:", "E_PARSE"),
        ("dotted.toml:1:", "E_PARSE"),
        ("nul.toml:2:", "E_ENCODING"),
        ("latin1.toml:2:", "E_ENCODING"),
        ("nan.toml:2:", "E_PARSE"),
        ("huge.toml", "E_TOO_LARGE"),
        ("loop.toml", "E_IO"),
    ] {
        assert!(
            all.lines().any(|l| l.contains(file) && l.contains(want)),
            "no {want} line for {file} in:\n{all:.2000}"
        );
    }
    for quoted in ["[[[[", "{ b = { b", "k1.k2.k3"] {
        assert!(
            !all.contains(quoted),
            "output quotes the source: {all:.2000}"
        );
    }

    let (code, stdout, _) = hotconf_check(&dirs, &["--format", "json"]);
    assert_eq!(code, 1);
    let problems: Vec<serde_json::Value> =
        serde_json::from_str(&stdout).expect("--format json prints a JSON array");
    assert_eq!(problems.len(), cases.len() + 2, "{stdout:.2000}");
}

#[test]
fn check_binary_respects_max_file_size() {
    let dirs = Dirs::new();
    dirs.schema("app", &json!({"type": "object"}));
    let mut f = std::fs::File::create(dirs.configs.join("app.toml")).expect("create");
    for i in 0..200 {
        writeln!(f, "key_{i:03} = \"{}\"", "v".repeat(20)).expect("write");
    }
    drop(f);
    let (code, stdout, stderr) = hotconf_check(&dirs, &["--max-file-size", "1KiB"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        format!("{stdout}{stderr}").contains("E_TOO_LARGE"),
        "{stdout}{stderr}"
    );
    let (code, stdout, stderr) = hotconf_check(&dirs, &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
}

/// A named pipe called `NAME.toml` is not a regular file, so not a document
/// (SPEC §1): listing the directory skips it, naming it is `E_IO`; neither
/// ever opens it for reading, which would block.
#[test]
fn check_binary_does_not_hang_on_a_named_pipe() {
    let dirs = Dirs::new();
    dirs.schema("pipe", &json!({"type": "object"}));
    dirs.schema("ok", &json!({"type": "object"}));
    dirs.config("ok", b"a = 1\n");
    let fifo = dirs.configs.join("pipe.toml");
    mkfifo(&fifo);
    let (code, stdout, stderr) = hotconf_check(&dirs, &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let fifo = fifo.to_str().expect("UTF-8 path");
    let (code, stdout, stderr) = hotconf_check(&dirs, &[fifo]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        format!("{stdout}{stderr}").contains("E_IO"),
        "{stdout}{stderr}"
    );
}
