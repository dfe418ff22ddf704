//! Reload step 2, *judge*: a verdict for every document whose inputs
//! changed. A document whose bytes and schema closure are what is served
//! needs none; one whose inputs are those of the last judged candidate gets
//! that candidate's verdict again; only new inputs go through the
//! [`crate::pipeline`] (parse, validate, build the registered type).
//!
//! It reads no files (that was [`super::scan`]) and decides nothing about
//! what is served (that is [`super::plan`]).

use std::sync::Arc;
use std::time::SystemTime;

use crate::pipeline;
use crate::pipeline::rejection::{Code, Problem};
use crate::store::served_document;
use crate::store::snapshot::ServedDocument;
use crate::store::status::LastError;
use crate::store::typed::TypeRegistry;

use super::plan::Memory;
use super::scan::{Key, Scanned};

/// The judgement of one candidate.
#[derive(Debug, Clone)]
pub(super) enum Verdict {
    /// Valid; this is what would be served (generation filled at publish).
    Accepted(Arc<ServedDocument>),
    /// Invalid; this is what its status says.
    Rejected(LastError),
}

/// What a listed document needs before the plan can use it.
pub(super) enum Triage {
    /// On disk is what is served.
    Unchanged,
    /// Same inputs as the last judged candidate: reuse its verdict.
    Known(Verdict),
    /// New inputs: must be evaluated.
    Evaluate,
}

/// One read document with its verdict.
pub(super) struct Judged {
    /// The document's name.
    pub(super) name: String,
    /// What was read.
    pub(super) scanned: Scanned,
    /// `None`: on disk is what is served.
    pub(super) verdict: Option<Verdict>,
    /// Judged by this reload (not remembered from an earlier one).
    pub(super) fresh: bool,
}

/// Decides, without evaluating, what `s` needs. A served version without
/// its registered typed value (restored from disk) is judged again, so
/// typed readers get one.
pub(super) fn triage(
    types: &TypeRegistry,
    name: &str,
    s: &Scanned,
    served: Option<&Arc<ServedDocument>>,
    memory: Option<&Memory>,
) -> Triage {
    if served.is_some_and(|d| Key::of_served(d) == s.key && types.is_satisfied_by(name, d)) {
        return Triage::Unchanged;
    }
    match memory.and_then(|m| m.candidate.as_ref()) {
        Some((k, v)) if *k == s.key => Triage::Known(v.clone()),
        _ => Triage::Evaluate,
    }
}

/// Turns a triaged document into a judged one, evaluating it if needed.
pub(super) fn judge(
    types: &TypeRegistry,
    name: String,
    scanned: Scanned,
    triage: Triage,
    served: Option<&Arc<ServedDocument>>,
) -> Judged {
    let (verdict, fresh) = match triage {
        Triage::Unchanged => (None, false),
        Triage::Known(v) => (Some(v), false),
        Triage::Evaluate => (Some(evaluate(types, &name, &scanned, served)), true),
    };
    Judged {
        name,
        scanned,
        verdict,
        fresh,
    }
}

/// Judges one candidate: parse, validate, then build the registered type's
/// value (`E_TYPE` if it does not fit). Pure apart from the clock.
fn evaluate(
    types: &TypeRegistry,
    name: &str,
    s: &Scanned,
    served: Option<&Arc<ServedDocument>>,
) -> Verdict {
    let judged = match (&s.bytes, &s.schema) {
        (Err(r), _) | (Ok(_), Err(r)) => Err(r.clone()),
        (Ok(bytes), Ok(schema)) => pipeline::evaluate(&s.label, bytes, schema).and_then(|parsed| {
            let typed = types.build(name, &s.label, &parsed, schema)?;
            Ok(served_document(&s.path, bytes, parsed.value, schema, typed))
        }),
    };
    match judged {
        Ok(doc) => Verdict::Accepted(Arc::new(doc)),
        Err(mut rejection) => {
            let sha256 = s.key.doc.as_ref().ok().cloned();
            let same_bytes = served.is_some_and(|d| Some(&d.sha256) == sha256.as_ref());
            if same_bytes && rejection.code == Code::Schema {
                // Only the schema moved: say that nothing was applied.
                rejection.problems.push(Problem::bare(
                    "its schema changed and this document does not satisfy the new one; \
                     its last good value and schema stay in force",
                ));
            }
            Verdict::Rejected(LastError {
                rejection,
                sha256,
                at: SystemTime::now(),
            })
        }
    }
}
