//! Diagnostics: collected during a run, rendered like a compiler's (`file:line:col`, the source
//! line, a caret) by `codespan-reporting`.

use std::fmt;

use codespan_reporting::diagnostic::{Diagnostic as Report, Label};
use codespan_reporting::files::{Files as _, SimpleFiles};
use codespan_reporting::term::{self, Chars, Config};

use crate::ast::Loc;

/// The kind of a diagnostic, printed as its code: `error[unknown-type]: ...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Code {
    Syntax,
    UnknownType,
    Duplicate,
    ImportCycle,
    MissingImport,
    ImportNotFound,
    ReservedWord,
    Unsupported,
    RecursiveType,
    MissingPackage,
    Io,
}

impl Code {
    fn as_str(self) -> &'static str {
        match self {
            Code::Syntax => "syntax",
            Code::UnknownType => "unknown-type",
            Code::Duplicate => "duplicate",
            Code::ImportCycle => "import-cycle",
            Code::MissingImport => "missing-import",
            Code::ImportNotFound => "import-not-found",
            Code::ReservedWord => "reserved-word",
            Code::Unsupported => "unsupported",
            Code::RecursiveType => "recursive-type",
            Code::MissingPackage => "missing-package",
            Code::Io => "io",
        }
    }
}

/// The source files of one run, by id (the `file` of a [`Loc`]).
#[derive(Debug, Default, Clone)]
pub(crate) struct Sources {
    files: SimpleFiles<String, String>,
}

impl Sources {
    pub fn add(&mut self, name: String, text: String) -> usize {
        self.files.add(name, text)
    }

    pub fn files(&self) -> &SimpleFiles<String, String> {
        &self.files
    }

    pub fn name(&self, file: usize) -> String {
        self.files
            .get(file)
            .map(|f| f.name().clone())
            .unwrap_or_default()
    }

    pub fn text(&self, file: usize) -> &str {
        self.files
            .get(file)
            .map(|f| f.source().as_str())
            .unwrap_or("")
    }

    /// 1-based line and column of a byte offset.
    pub fn line_col(&self, file: usize, byte: usize) -> (usize, usize) {
        let line = self.files.line_index(file, byte).unwrap_or(0);
        let col = self.files.column_number(file, line, byte).unwrap_or(1);
        (line + 1, col)
    }
}

/// Collects the diagnostics of one run.
#[derive(Debug, Default)]
pub(crate) struct Sink {
    reports: Vec<Report<usize>>,
}

impl Sink {
    /// An error with a primary label at `loc`.
    pub fn error(
        &mut self,
        code: Code,
        message: impl std::fmt::Display,
        loc: &Loc,
        label: impl std::fmt::Display,
    ) -> &mut Report<usize> {
        let report = Report::error()
            .with_code(code.as_str())
            .with_message(message)
            .with_label(Label::primary(loc.file, loc.range.clone()).with_message(label));
        let index = self.reports.len();
        self.reports.push(report);
        &mut self.reports[index]
    }

    /// An error that belongs to no source location (an unreadable root file, say).
    pub fn error_unlocated(&mut self, code: Code, message: impl std::fmt::Display) {
        self.reports.push(
            Report::error()
                .with_code(code.as_str())
                .with_message(message),
        );
    }

    pub fn has_errors(&self) -> bool {
        !self.reports.is_empty()
    }

    /// The collected errors, sorted by file and position (stable for equal positions).
    pub fn finish(mut self, sources: Sources) -> Diagnostics {
        self.reports.sort_by_key(|r| {
            r.labels
                .first()
                .map_or((0, 0, 0), |l| (1, l.file_id, l.range.start))
        });
        Diagnostics {
            sources,
            reports: self.reports,
        }
    }
}

/// Adds a secondary label to a report.
pub(crate) fn secondary(loc: &Loc, message: impl std::fmt::Display) -> Label<usize> {
    Label::secondary(loc.file, loc.range.clone()).with_message(message)
}

/// The errors found in a set of schema files: every error of the run, not just the first.
///
/// [`Display`](fmt::Display) renders them like a compiler, without colours:
///
/// ```text
/// error[unknown-type]: unknown type `Sid`
///   --> schemas/market.rq:7:11
///   |
/// 7 |     side: Sid,
///   |           ^^^ not a built-in type or a message or enum visible here
/// ```
#[derive(Debug, Clone)]
pub struct Diagnostics {
    sources: Sources,
    reports: Vec<Report<usize>>,
}

impl Diagnostics {
    /// The number of errors.
    #[must_use]
    pub fn len(&self) -> usize {
        self.reports.len()
    }

    /// Whether there are no errors (never the case for a returned [`Error::Schema`](crate::Error)).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.reports.is_empty()
    }

    /// The errors in a short form, one per entry: `path:line:col: message` (or just the message
    /// for an error without a location).
    #[must_use]
    pub fn summaries(&self) -> Vec<String> {
        self.reports
            .iter()
            .map(|r| match r.labels.first() {
                Some(l) => {
                    let (line, col) = self.sources.line_col(l.file_id, l.range.start);
                    format!(
                        "{}:{line}:{col}: {}",
                        self.sources.name(l.file_id),
                        r.message
                    )
                }
                None => r.message.clone(),
            })
            .collect()
    }

    fn config() -> Config {
        Config {
            chars: Chars::ascii(),
            ..Config::default()
        }
    }

    /// Writes the rendered errors to standard error, in colour if `color` is set.
    pub fn eprint(&self, color: bool) {
        use term::termcolor::{ColorChoice, StandardStream};
        let choice = if color {
            ColorChoice::Auto
        } else {
            ColorChoice::Never
        };
        let stream = StandardStream::stderr(choice);
        let mut lock = stream.lock();
        let styles = term::Styles::default();
        let mut writer = term::StylesWriter::new(&mut lock, &styles);
        for report in &self.reports {
            // Rendering only fails for ranges outside their file, which the parser never makes.
            let _ = term::emit_to_write_style(
                &mut writer,
                &Self::config(),
                &self.sources.files,
                report,
            );
        }
        let n = self.reports.len();
        let _ = term::emit_to_write_style(
            &mut writer,
            &Self::config(),
            &self.sources.files,
            &Report::error().with_message(format!(
                "{n} error{} in schema files",
                if n == 1 { "" } else { "s" }
            )),
        );
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        for report in &self.reports {
            term::emit_to_string(&mut out, &Self::config(), &self.sources.files, report)
                .map_err(|_| fmt::Error)?;
        }
        let n = self.reports.len();
        write!(
            f,
            "{out}error: {n} error{} in schema files",
            if n == 1 { "" } else { "s" }
        )
    }
}
