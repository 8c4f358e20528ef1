//! Comparing two versions of a schema: which changes alter a type's fingerprint, and why.
//!
//! rkyv archives carry no field tags or version numbers: a type's archived layout *is* its field
//! list. So every change to a type's fields or variants changes its layout, and a queue created
//! with the old type refuses the new one (their fingerprints differ). Renames keep the layout but
//! change the fingerprint too; they are reported as breaking with that explanation. Doc comments,
//! the order of type definitions, imports and new types are compatible.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use codespan_reporting::diagnostic::{Diagnostic as Report, Label};
use codespan_reporting::term::{self, Chars, Config};

use crate::ast::Loc;
use crate::builder::{Error, load_and_check};
use crate::diag::{Sink, Sources};
use crate::fingerprint;
use crate::load::Source;
use crate::model::{Body, Kind, Model, Shape, Ty, TypeDef};

/// One difference between the old and the new schema.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Change {
    /// The fully qualified type name (`market.Tick`).
    pub type_name: String,
    /// Whether the change breaks existing queues of the type.
    pub breaking: bool,
    /// What changed, e.g. ``field `bid` changed type from `f64` to `f32` ``.
    pub message: String,
    old: Option<Loc>,
    new: Option<Loc>,
}

/// The result of [`compat`]: every change, breaking or not.
#[derive(Debug, Clone)]
pub struct CompatReport {
    changes: Vec<Change>,
    fingerprints: Vec<(String, u64, u64)>,
    sources: Sources,
}

impl CompatReport {
    /// Whether no existing type changed its fingerprint (new types are fine).
    #[must_use]
    pub fn is_compatible(&self) -> bool {
        !self.changes.iter().any(|c| c.breaking)
    }

    /// Every change found, breaking ones first, in the order of the old schema's types.
    #[must_use]
    pub fn changes(&self) -> &[Change] {
        &self.changes
    }

    /// The breaking changes.
    pub fn breaking(&self) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(|c| c.breaking)
    }
}

impl fmt::Display for CompatReport {
    /// Renders each change like a compiler diagnostic, then a verdict line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config = Config {
            chars: Chars::ascii(),
            ..Config::default()
        };
        let files = self.sources.files();
        let mut out = String::new();
        for change in &self.changes {
            let head = if change.breaking {
                Report::error().with_code("breaking")
            } else {
                Report::note().with_code("compatible")
            };
            let mut labels = Vec::new();
            if let Some(new) = &change.new {
                labels.push(Label::primary(new.file, new.range.clone()).with_message("new"));
            }
            if let Some(old) = &change.old {
                let label = if labels.is_empty() {
                    Label::primary(old.file, old.range.clone())
                } else {
                    Label::secondary(old.file, old.range.clone())
                };
                labels.push(label.with_message("old"));
            }
            let mut report = head
                .with_message(format!("{}: {}", change.type_name, change.message))
                .with_labels(labels);
            if change.breaking
                && let Some((_, old, new)) = self
                    .fingerprints
                    .iter()
                    .find(|(n, ..)| *n == change.type_name)
            {
                report = report.with_note(format!("fingerprint {old:#018x} -> {new:#018x}"));
            }
            term::emit_to_string(&mut out, &config, files, &report).map_err(|_| fmt::Error)?;
        }
        let breaking = self.breaking().count();
        if breaking == 0 {
            write!(
                f,
                "{out}compatible: every existing type keeps its fingerprint and archived layout"
            )
        } else {
            let mut types: Vec<&str> = self.breaking().map(|c| c.type_name.as_str()).collect();
            types.dedup();
            write!(
                f,
                "{out}incompatible: {breaking} breaking change{} in {} type{} ({})",
                if breaking == 1 { "" } else { "s" },
                types.len(),
                if types.len() == 1 { "" } else { "s" },
                types.join(", ")
            )
        }
    }
}

/// Compares two versions of a schema file (with the files each imports).
///
/// # Errors
///
/// [`Error::Schema`] if either version has errors.
pub fn compat(old: impl AsRef<Path>, new: impl AsRef<Path>) -> Result<CompatReport, Error> {
    let old = [old.as_ref().display().to_string()];
    let new = [new.as_ref().display().to_string()];
    run(
        Source::Fs { includes: &[] },
        &old,
        Source::Fs { includes: &[] },
        &new,
    )
}

/// [`compat`] over in-memory files: every `(path, text)` pair of each side is a root.
///
/// ```
/// let old = "package m; message Tick { price: i64, size: u32 }";
/// let new = "package m; message Tick { price: i64, size: u64 }";
/// let report = repliq_codegen::compat_sources(&[("m.rq", old)], &[("m.rq", new)])?;
/// assert!(!report.is_compatible());
/// assert_eq!(
///     report.changes()[0].message,
///     "field `size` changed type from `u32` to `u64`"
/// );
/// # Ok::<(), repliq_codegen::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::Schema`] if either version has errors.
pub fn compat_sources(old: &[(&str, &str)], new: &[(&str, &str)]) -> Result<CompatReport, Error> {
    let old_roots: Vec<String> = old.iter().map(|(p, _)| p.to_string()).collect();
    let new_roots: Vec<String> = new.iter().map(|(p, _)| p.to_string()).collect();
    run(
        Source::Memory(old),
        &old_roots,
        Source::Memory(new),
        &new_roots,
    )
}

fn run(
    old_source: Source<'_>,
    old_roots: &[String],
    new_source: Source<'_>,
    new_roots: &[String],
) -> Result<CompatReport, Error> {
    let mut sources = Sources::default();
    let mut sink = Sink::default();
    let old = load_and_check(old_source, old_roots, &mut sources, &mut sink).model;
    let new = load_and_check(new_source, new_roots, &mut sources, &mut sink).model;
    if sink.has_errors() {
        return Err(Error::Schema(sink.finish(sources)));
    }
    let mut cmp = Compare {
        old_fps: fingerprint::all(&old),
        new_fps: fingerprint::all(&new),
        old: &old,
        new: &new,
        changes: Vec::new(),
    };
    cmp.run();
    let mut changes = cmp.changes;
    changes.sort_by_key(|c| !c.breaking);
    let fingerprints = old
        .types
        .iter()
        .enumerate()
        .filter_map(|(i, t)| {
            new.find(&t.fq)
                .map(|j| (t.fq.clone(), cmp.old_fps[i], cmp.new_fps[j]))
        })
        .collect();
    Ok(CompatReport {
        changes,
        fingerprints,
        sources,
    })
}

struct Compare<'a> {
    old: &'a Model,
    new: &'a Model,
    old_fps: Vec<u64>,
    new_fps: Vec<u64>,
    changes: Vec<Change>,
}

impl Compare<'_> {
    fn change(
        &mut self,
        ty: &str,
        breaking: bool,
        message: String,
        old: Option<&Loc>,
        new: Option<&Loc>,
    ) {
        self.changes.push(Change {
            type_name: ty.to_string(),
            breaking,
            message,
            old: old.cloned(),
            new: new.cloned(),
        });
    }

    fn run(&mut self) {
        let (old, new) = (self.old, self.new);
        for (i, o) in old.types.iter().enumerate() {
            let Some(j) = new.find(&o.fq) else {
                self.change(
                    &o.fq,
                    true,
                    "type removed (or renamed): readers of existing queues can no longer name it"
                        .into(),
                    Some(&o.loc),
                    None,
                );
                continue;
            };
            let n = &new.types[j];
            let before = self.changes.len();
            self.compare_type(o, n);
            if self.changes.len() == before && self.old_fps[i] != self.new_fps[j] {
                // Every structural difference is named above; this is a safety net.
                self.change(
                    &o.fq,
                    true,
                    "the fingerprint changed".into(),
                    Some(&o.loc),
                    Some(&n.loc),
                );
            }
        }
        for n in &new.types {
            if old.find(&n.fq).is_none() {
                self.change(&n.fq, false, "new type".into(), None, Some(&n.loc));
            }
        }
    }

    fn compare_type(&mut self, o: &TypeDef, n: &TypeDef) {
        match (&o.kind, &n.kind) {
            (Kind::Message(ob), Kind::Message(nb)) => {
                self.compare_body(&o.fq, "", ob, nb, &o.loc, &n.loc)
            }
            (Kind::Enum(ov), Kind::Enum(nv)) => {
                let old_names: Vec<&str> = ov.iter().map(|v| v.name.as_str()).collect();
                let new_names: Vec<&str> = nv.iter().map(|v| v.name.as_str()).collect();
                // Same place, same data, a name that exists on one side only: a rename.
                let mut renamed = Vec::new();
                for (a, b) in ov.iter().zip(nv) {
                    if a.name != b.name
                        && !new_names.contains(&a.name.as_str())
                        && !old_names.contains(&b.name.as_str())
                        && self.same_body(&a.body, &b.body)
                    {
                        renamed.push((a.name.as_str(), b.name.as_str()));
                        self.change(
                            &o.fq,
                            true,
                            format!(
                                "variant `{}` renamed to `{}`: same layout, but the fingerprint changes",
                                a.name, b.name
                            ),
                            Some(&a.loc),
                            Some(&b.loc),
                        );
                    }
                }
                for (i, a) in ov.iter().enumerate() {
                    if renamed.iter().any(|(old, _)| *old == a.name) {
                        continue;
                    }
                    match nv.iter().position(|b| b.name == a.name) {
                        None => self.change(
                            &o.fq,
                            true,
                            format!("variant `{}` removed", a.name),
                            Some(&a.loc),
                            Some(&n.loc),
                        ),
                        Some(j) => {
                            let b = &nv[j];
                            if i != j {
                                self.change(
                                    &o.fq,
                                    true,
                                    format!(
                                        "variant `{}` moved from position {i} to {j}: its discriminant changes",
                                        a.name
                                    ),
                                    Some(&a.loc),
                                    Some(&b.loc),
                                );
                            }
                            let ctx = format!("variant `{}`: ", a.name);
                            self.compare_body(&o.fq, &ctx, &a.body, &b.body, &a.loc, &b.loc);
                        }
                    }
                }
                for b in nv {
                    if !old_names.contains(&b.name.as_str())
                        && !renamed.iter().any(|(_, new)| *new == b.name)
                    {
                        self.change(
                            &o.fq,
                            true,
                            format!(
                                "variant `{}` added: the enum's archived layout and fingerprint change",
                                b.name
                            ),
                            Some(&o.loc),
                            Some(&b.loc),
                        );
                    }
                }
            }
            (Kind::Message(_), Kind::Enum(_)) | (Kind::Enum(_), Kind::Message(_)) => {
                let kind = |k: &Kind| {
                    if matches!(k, Kind::Message(_)) {
                        "message"
                    } else {
                        "enum"
                    }
                };
                self.change(
                    &o.fq,
                    true,
                    format!("changed from {} to {}", kind(&o.kind), kind(&n.kind)),
                    Some(&o.loc),
                    Some(&n.loc),
                );
            }
        }
    }

    fn ty_old(&self, t: &Ty) -> String {
        t.display(self.old)
    }

    /// Whether an old and a new type are the same Rust type (`bytes` is `list<u8>`).
    fn same_ty(&self, old: &Ty, new: &Ty) -> bool {
        old.canonical(self.old) == new.canonical(self.new)
    }

    fn ty_new(&self, t: &Ty) -> String {
        t.display(self.new)
    }

    fn same_body(&self, a: &Body, b: &Body) -> bool {
        a.shape == b.shape
            && a.fields.len() == b.fields.len()
            && a.fields
                .iter()
                .zip(&b.fields)
                .all(|(x, y)| self.same_ty(&x.ty, &y.ty))
    }

    /// The message types that `ty` (new model) refers to and whose fingerprint changed.
    fn changed_refs(&self, ty: &Ty) -> Vec<String> {
        let mut out = Vec::new();
        ty.refs(&mut |j| {
            let fq = &self.new.types[j].fq;
            if let Some(i) = self.old.find(fq)
                && self.old_fps[i] != self.new_fps[j]
                && !out.contains(fq)
            {
                out.push(fq.clone());
            }
        });
        out
    }

    fn compare_body(&mut self, fq: &str, ctx: &str, o: &Body, n: &Body, oloc: &Loc, nloc: &Loc) {
        if o.shape != n.shape {
            let shape = |s: Shape| match s {
                Shape::Named => "named fields",
                Shape::Tuple => "tuple fields",
                Shape::Unit => "no fields",
            };
            self.change(
                fq,
                true,
                format!("{ctx}changed from {} to {}", shape(o.shape), shape(n.shape)),
                Some(oloc),
                Some(nloc),
            );
            return;
        }
        // Same place, same type, a name that exists on one side only: a rename.
        let old_names: Vec<&str> = o.fields.iter().map(|f| f.name.as_str()).collect();
        let new_names: Vec<&str> = n.fields.iter().map(|f| f.name.as_str()).collect();
        let mut renamed = Vec::new();
        if o.shape == Shape::Named {
            for (a, b) in o.fields.iter().zip(&n.fields) {
                if a.name != b.name
                    && !new_names.contains(&a.name.as_str())
                    && !old_names.contains(&b.name.as_str())
                    && self.same_ty(&a.ty, &b.ty)
                {
                    renamed.push((a.name.as_str(), b.name.as_str()));
                    self.change(
                        fq,
                        true,
                        format!(
                            "{ctx}field `{}` renamed to `{}`: same layout, but the fingerprint changes",
                            a.name, b.name
                        ),
                        Some(&a.loc),
                        Some(&b.loc),
                    );
                }
            }
        }
        let new_pos: HashMap<&str, usize> = n
            .fields
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name.as_str(), i))
            .collect();
        let mut common_old_order = Vec::new();
        for a in &o.fields {
            if renamed.iter().any(|(old, _)| *old == a.name) {
                continue;
            }
            let Some(&j) = new_pos.get(a.name.as_str()) else {
                {
                    self.change(
                        fq,
                        true,
                        format!("{ctx}field `{}` removed", a.name),
                        Some(&a.loc),
                        Some(nloc),
                    );
                }
                continue;
            };
            let b = &n.fields[j];
            common_old_order.push(j);
            let (ot, nt) = (self.ty_old(&a.ty), self.ty_new(&b.ty));
            if !self.same_ty(&a.ty, &b.ty) {
                self.change(
                    fq,
                    true,
                    format!("{ctx}field `{}` changed type from `{ot}` to `{nt}`", a.name),
                    Some(&a.ty_loc),
                    Some(&b.ty_loc),
                );
            } else {
                for dep in self.changed_refs(&b.ty) {
                    self.change(
                        fq,
                        true,
                        format!(
                            "{ctx}field `{}`: its type `{dep}` changed (see there)",
                            a.name
                        ),
                        Some(&a.ty_loc),
                        Some(&b.ty_loc),
                    );
                }
            }
        }
        if common_old_order.windows(2).any(|w| w[0] > w[1]) {
            self.change(
                fq,
                true,
                format!("{ctx}fields reordered: the archived layout follows declaration order"),
                Some(oloc),
                Some(nloc),
            );
        }
        for b in &n.fields {
            if !old_names.contains(&b.name.as_str())
                && !renamed.iter().any(|(_, new)| *new == b.name)
            {
                self.change(
                    fq,
                    true,
                    format!(
                        "{ctx}field `{}` added: archived records have no room for it",
                        b.name
                    ),
                    Some(oloc),
                    Some(&b.loc),
                );
            }
        }
    }
}
