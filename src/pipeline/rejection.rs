//! The one error type of the pipeline: why a document (or schema) was not
//! accepted, with a stable code and source locations.
//!
//! Everything downstream — `hotconf check`, log lines, the status API —
//! prints rejections through this type, so the rules about what a message
//! may contain (no quoted source lines, no secrets) are enforced in one place:
//! the code that *builds* a [`Problem`] must never put source text or a
//! secret value into `message`. This module only formats.

use std::fmt;

use serde::Serialize;

/// The stable error codes of SPEC §3. Their spelling is part of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Code {
    /// The file could not be read (permissions, vanished, not a regular file).
    #[serde(rename = "E_IO")]
    Io,
    /// The file is larger than `--max-file-size`; it was not read whole.
    #[serde(rename = "E_TOO_LARGE")]
    TooLarge,
    /// The bytes are not UTF-8, or contain NUL.
    #[serde(rename = "E_ENCODING")]
    Encoding,
    /// The text is not TOML (or holds `nan`/`inf`, which JSON cannot carry).
    #[serde(rename = "E_PARSE")]
    Parse,
    /// The document violates its schema.
    #[serde(rename = "E_SCHEMA")]
    Schema,
    /// The schema file itself (or a file it references) is bad.
    #[serde(rename = "E_SCHEMA_INVALID")]
    SchemaInvalid,
    /// There is no `NAME.schema.json` for the document.
    #[serde(rename = "E_NO_SCHEMA")]
    NoSchema,
    /// The document's file has disappeared (watch-triggered reloads only).
    #[serde(rename = "E_MISSING")]
    Missing,
    /// Valid under the schema but does not deserialize into the Rust type an
    /// embedding program registered for the document.
    #[serde(rename = "E_TYPE")]
    Type,
}

impl Code {
    /// The code as printed: `E_PARSE`, `E_SCHEMA`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Io => "E_IO",
            Code::TooLarge => "E_TOO_LARGE",
            Code::Encoding => "E_ENCODING",
            Code::Parse => "E_PARSE",
            Code::Schema => "E_SCHEMA",
            Code::SchemaInvalid => "E_SCHEMA_INVALID",
            Code::NoSchema => "E_NO_SCHEMA",
            Code::Missing => "E_MISSING",
            Code::Type => "E_TYPE",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem inside a rejection: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// JSON pointer of the offending value (`""` for the whole document or
    /// when no value is involved, e.g. a parse error).
    pub pointer: String,
    /// 1-based line in the source file, when it can be known.
    pub line: Option<usize>,
    /// 1-based column (in characters), when it can be known.
    pub column: Option<usize>,
    /// What is wrong. Never quotes a source line or a secret value.
    pub message: String,
}

impl Problem {
    /// A problem with no location (I/O, size, missing schema...).
    pub fn bare(message: impl Into<String>) -> Self {
        Problem {
            pointer: String::new(),
            line: None,
            column: None,
            message: message.into(),
        }
    }

    /// A problem at a known line and column.
    pub fn at(
        pointer: impl Into<String>,
        line: usize,
        column: usize,
        message: impl Into<String>,
    ) -> Self {
        Problem {
            pointer: pointer.into(),
            line: Some(line),
            column: Some(column),
            message: message.into(),
        }
    }
}

/// Why a file was not accepted: a stable code, the file, and every problem
/// found (at least one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The stable code shared by every problem of this rejection.
    pub code: Code,
    /// The file as the operator should see it (the path given or listed).
    pub file: String,
    /// Every problem found, in source order. Never empty.
    pub problems: Vec<Problem>,
}

/// The flat, serializable form of one problem: what `check --format json`
/// prints and what the status API embeds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlatProblem<'a> {
    /// The file the problem is in.
    pub file: &'a str,
    /// The stable code.
    pub code: Code,
    /// JSON pointer of the offending value.
    pub pointer: &'a str,
    /// 1-based line, or null.
    pub line: Option<usize>,
    /// 1-based column, or null.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: &'a str,
}

impl Rejection {
    /// A rejection with a single problem.
    pub fn new(code: Code, file: impl Into<String>, problem: Problem) -> Self {
        Rejection {
            code,
            file: file.into(),
            problems: vec![problem],
        }
    }

    /// A rejection with a single problem without location.
    pub fn bare(code: Code, file: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(code, file, Problem::bare(message))
    }

    /// One line per problem, compiler style:
    /// `FILE:LINE:COL: CODE POINTER: message`, or `FILE: CODE message`
    /// without a line.
    pub fn lines(&self) -> Vec<String> {
        self.problems
            .iter()
            .map(|p| self.format_problem(p))
            .collect()
    }

    fn format_problem(&self, p: &Problem) -> String {
        let what = if p.pointer.is_empty() {
            p.message.clone()
        } else {
            format!("{}: {}", p.pointer, p.message)
        };
        match (p.line, p.column) {
            (Some(l), Some(c)) => format!("{}:{}:{}: {} {}", self.file, l, c, self.code, what),
            (Some(l), None) => format!("{}:{}: {} {}", self.file, l, self.code, what),
            _ => format!("{}: {} {}", self.file, self.code, what),
        }
    }

    /// One line per problem in gcc's diagnostic form, which editors' problem
    /// matchers parse (VS Code `$gcc`, Emacs, vim): `FILE:LINE:COL: error:
    /// CODE POINTER: message`, or `FILE: error: CODE message` without a line.
    pub fn gcc_lines(&self) -> Vec<String> {
        self.problems
            .iter()
            .map(|p| {
                let what = if p.pointer.is_empty() {
                    p.message.clone()
                } else {
                    format!("{}: {}", p.pointer, p.message)
                };
                match (p.line, p.column) {
                    (Some(l), Some(c)) => {
                        format!("{}:{}:{}: error: {} {}", self.file, l, c, self.code, what)
                    }
                    (Some(l), None) => {
                        format!("{}:{}: error: {} {}", self.file, l, self.code, what)
                    }
                    _ => format!("{}: error: {} {}", self.file, self.code, what),
                }
            })
            .collect()
    }

    /// A one-line summary: the first problem, plus how many more.
    pub fn summary(&self) -> String {
        let first = self
            .problems
            .first()
            .map(|p| self.format_problem(p))
            .unwrap_or_else(|| format!("{}: {}", self.file, self.code));
        match self.problems.len() {
            0 | 1 => first,
            n => format!("{first} (and {} more)", n - 1),
        }
    }

    /// The flat records of every problem (for JSON output).
    pub fn flat(&self) -> Vec<FlatProblem<'_>> {
        self.problems
            .iter()
            .map(|p| FlatProblem {
                file: &self.file,
                code: self.code,
                pointer: &p.pointer,
                line: p.line,
                column: p.column,
                message: &p.message,
            })
            .collect()
    }

    /// Sort key for stable output: file, then line, column, pointer.
    pub fn sort_problems(&mut self) {
        self.problems.sort_by(|a, b| {
            (
                a.line.unwrap_or(0),
                a.column.unwrap_or(0),
                &a.pointer,
                &a.message,
            )
                .cmp(&(
                    b.line.unwrap_or(0),
                    b.column.unwrap_or(0),
                    &b.pointer,
                    &b.message,
                ))
        });
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, line) in self.lines().iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            f.write_str(line)?;
        }
        Ok(())
    }
}

impl std::error::Error for Rejection {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiler_style_lines() {
        let r = Rejection::new(
            Code::Schema,
            "configs/app.toml",
            Problem::at(
                "/server/timeout_ms",
                12,
                11,
                "\"5000ms\" is not of type \"integer\"",
            ),
        );
        assert_eq!(
            r.lines(),
            vec!["configs/app.toml:12:11: E_SCHEMA /server/timeout_ms: \"5000ms\" is not of type \"integer\""]
        );
        let r = Rejection::bare(
            Code::NoSchema,
            "configs/x.toml",
            "no schema schemas/x.schema.json",
        );
        assert_eq!(
            r.to_string(),
            "configs/x.toml: E_NO_SCHEMA no schema schemas/x.schema.json"
        );
    }
}
