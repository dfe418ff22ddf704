//! The outputs file (`--outputs FILE`): TOML validated, like a document,
//! against a schema built into the binary (the copy in
//! `schemas/hotconf-outputs.schema.json` is for editors), then turned into
//! [`Definition`]s with their templates read and compiled.
//!
//! Loading is all-or-nothing: any problem — a type error in the file (with
//! line:col), an unreadable template, a template syntax error — rejects the
//! whole file, so a daemon keeps its previous definition. Nothing here runs
//! a command or writes a file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::pipeline::document::{self, Target};
use crate::pipeline::rejection::{Code, Problem, Rejection};
use crate::pipeline::schema::Schema;
use crate::pipeline::{display_path, Limits};

/// The schema of the outputs file, as shipped in `schemas/`.
pub const SCHEMA: &str = include_str!("../../schemas/hotconf-outputs.schema.json");

/// The name the built-in schema is compiled under (its messages name it).
const SCHEMA_NAME: &str = "hotconf-outputs";

/// Default limit for each `check` and `apply` command.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Default mode of a destination: renders may hold secrets.
pub const DEFAULT_MODE: u32 = 0o600;

/// Largest template file read.
const MAX_TEMPLATE_SIZE: u64 = 1 << 20;

/// What an output renders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A minijinja template: its path and text.
    Template {
        /// Where the template was read from.
        path: PathBuf,
        /// The template's text (compiled when rendering; checked at load).
        text: String,
    },
    /// One document mirrored as JSON.
    Json(String),
    /// One document mirrored as TOML.
    Toml(String),
}

/// One validated `[output.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Definition {
    /// The output's name.
    pub name: String,
    /// What is rendered.
    pub source: Source,
    /// The documents it reads: declared, or the template's free variables
    /// (`generation` excluded), or the mirrored document.
    pub documents: BTreeSet<String>,
    /// Whether the template reads `generation` (then every publish renders).
    pub uses_generation: bool,
    /// The file written.
    pub destination: PathBuf,
    /// Its mode.
    pub mode: u32,
    /// Its owner (name or uid), if set.
    pub owner: Option<String>,
    /// Its group (name or gid), if set.
    pub group: Option<String>,
    /// Run on the candidate before it replaces anything.
    pub check: Option<Vec<String>>,
    /// Run after the destination was replaced.
    pub apply: Option<Vec<String>>,
    /// Limit for each command.
    pub timeout: Duration,
}

impl Definition {
    /// The candidate's path: beside the destination, hidden, fixed per
    /// output (one run at a time per output), so that a check
    /// configuration can include it by name (nginx's `include`).
    pub fn candidate(&self) -> PathBuf {
        let file = self
            .destination
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.destination
            .with_file_name(format!(".{file}.hotconf-candidate"))
    }
}

/// Every output of one outputs file, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Definitions {
    /// The file they came from.
    pub file: PathBuf,
    /// The outputs by name.
    pub outputs: BTreeMap<String, Definition>,
}

#[derive(Deserialize)]
struct RawFile {
    #[serde(default)]
    output: BTreeMap<String, RawOutput>,
}

#[derive(Deserialize)]
struct RawOutput {
    template: Option<String>,
    format: Option<String>,
    document: Option<String>,
    documents: Option<Vec<String>>,
    destination: String,
    mode: Option<String>,
    owner: Option<String>,
    group: Option<String>,
    check: Option<Vec<String>>,
    apply: Option<Vec<String>>,
    timeout: Option<String>,
}

/// The built-in schema, compiled.
fn schema() -> Result<Schema, Rejection> {
    Schema::from_sources(
        Path::new("<built-in>"),
        SCHEMA_NAME,
        vec![(
            format!("{SCHEMA_NAME}.schema.json"),
            SCHEMA.as_bytes().to_vec(),
        )],
    )
}

/// Reads and validates the outputs file at `path`: every problem, with
/// line and column where there is one, or the definitions.
pub fn load(path: &Path) -> Result<Definitions, Vec<Rejection>> {
    let label = display_path(path);
    let bytes = document::read_capped(path, Limits::default().max_file_size, &label)
        .map_err(|r| vec![r])?;
    let parsed = document::parse(&label, &bytes).map_err(|r| vec![r])?;
    schema()
        .map_err(|r| vec![r])?
        .validate(&label, &parsed)
        .map_err(|r| vec![r])?;
    let raw: RawFile = serde_json::from_value(parsed.value.clone()).map_err(|e| {
        // The schema admits only what deserializes; this is a safety net.
        vec![Rejection::bare(Code::Schema, label.clone(), e.to_string())]
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut outputs = BTreeMap::new();
    let mut problems = Vec::new();
    let mut destinations: BTreeMap<PathBuf, String> = BTreeMap::new();
    for (name, raw) in raw.output {
        let at = |field: &str, message: String| {
            let pointer = format!("/output/{name}/{field}");
            match document::locate(&parsed.text, &pointer, Target::Value) {
                Some((line, col)) => Problem::at(pointer, line, col, message),
                None => Problem {
                    pointer,
                    ..Problem::bare(message)
                },
            }
        };
        match definition(&name, raw, base) {
            Ok(def) => {
                if let Some(other) = destinations.insert(def.destination.clone(), name.clone()) {
                    problems.push(Rejection::new(
                        Code::Schema,
                        label.clone(),
                        at(
                            "destination",
                            format!("the same destination as output {other:?}"),
                        ),
                    ));
                }
                outputs.insert(name, def);
            }
            Err(Invalid::Field(field, message)) => problems.push(Rejection::new(
                Code::Schema,
                label.clone(),
                at(field, message),
            )),
            Err(Invalid::Template(r)) => problems.push(r),
        }
    }
    if problems.is_empty() {
        Ok(Definitions {
            file: path.to_path_buf(),
            outputs,
        })
    } else {
        Err(problems)
    }
}

/// Why one output is invalid beyond its schema.
enum Invalid {
    /// A field's value (pointer segment, message).
    Field(&'static str, String),
    /// The template file (its own rejection, on the template).
    Template(Rejection),
}

fn definition(name: &str, raw: RawOutput, base: &Path) -> Result<Definition, Invalid> {
    let timeout = match &raw.timeout {
        None => DEFAULT_TIMEOUT,
        Some(t) => humantime::parse_duration(t)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| Invalid::Field("timeout", "not a positive duration".into()))?,
    };
    let mode = match &raw.mode {
        None => DEFAULT_MODE,
        Some(m) => u32::from_str_radix(m, 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| Invalid::Field("mode", "not an octal mode up to 0777".into()))?,
    };
    let (source, documents, uses_generation) = match (raw.template, raw.format, raw.document) {
        (Some(template), _, _) => {
            let path = base.join(&template);
            let label = display_path(&path);
            let bytes = document::read_capped(&path, MAX_TEMPLATE_SIZE, &label)
                .map_err(Invalid::Template)?;
            let text = String::from_utf8(bytes).map_err(|_| {
                Invalid::Template(Rejection::bare(Code::Encoding, label.clone(), "not UTF-8"))
            })?;
            let names =
                crate::output::render::free_variables(&label, &text).map_err(Invalid::Template)?;
            let uses_generation = names.contains("generation");
            let documents = match raw.documents {
                Some(declared) => declared.into_iter().collect(),
                None => names.into_iter().filter(|n| n != "generation").collect(),
            };
            (Source::Template { path, text }, documents, uses_generation)
        }
        (None, Some(format), Some(doc)) => {
            let documents = BTreeSet::from([doc.clone()]);
            let source = if format == "toml" {
                Source::Toml(doc)
            } else {
                Source::Json(doc)
            };
            (source, documents, false)
        }
        // The schema's oneOf rules this out.
        _ => {
            return Err(Invalid::Field(
                "template",
                "needs `template`, or `format` with `document`".into(),
            ))
        }
    };
    Ok(Definition {
        name: name.to_string(),
        source,
        documents,
        uses_generation,
        destination: PathBuf::from(raw.destination),
        mode,
        owner: raw.owner,
        group: raw.group,
        check: raw.check,
        apply: raw.apply,
        timeout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_schema_compiles() {
        schema().unwrap();
    }

    #[test]
    fn a_type_error_has_its_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("outputs.toml");
        std::fs::write(
            &file,
            "[output.web]\nformat = \"json\"\ndocument = \"app\"\ndestination = \"/tmp/x.json\"\ntimeout = 5\n",
        )
        .unwrap();
        let errs = load(&file).unwrap_err();
        let p = &errs[0].problems[0];
        assert_eq!((p.line, p.column), (Some(5), Some(11)), "{errs:?}");
    }

    #[test]
    fn a_template_reads_its_free_variables() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("t.j2"),
            "{% for u in upstreams.servers %}{{ u }} {{ generation }}{% endfor %}{% set x = 1 %}{{ x }}",
        )
        .unwrap();
        let file = dir.path().join("outputs.toml");
        std::fs::write(
            &file,
            "[output.web]\ntemplate = \"t.j2\"\ndestination = \"/tmp/x.conf\"\n",
        )
        .unwrap();
        let defs = load(&file).unwrap();
        let web = &defs.outputs["web"];
        assert_eq!(web.documents, BTreeSet::from(["upstreams".to_string()]));
        assert!(web.uses_generation);
        assert_eq!(web.mode, 0o600);
        assert_eq!(web.timeout, DEFAULT_TIMEOUT);
        assert_eq!(web.candidate(), Path::new("/tmp/.x.conf.hotconf-candidate"));
    }
}
