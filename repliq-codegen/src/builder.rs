//! The [`Builder`]: options, then one final call.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::diag::{Diagnostics, Sink, Sources};
use crate::expand::{self, Options};
use crate::load::{self, Loaded, Source};
use crate::model::{Kind, Model};
use crate::{check, fingerprint};

/// Starts configuring code generation; finish with [`Builder::compile`] (for `build.rs`) or
/// [`Builder::generate`] (pure, for tests and tools).
///
/// ```no_run
/// // build.rs
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     repliq_codegen::configure()
///         .include_file("schemas.rs")
///         .compile(&["../schemas/market.rq", "../schemas/orders.rq"])?;
///     Ok(())
/// }
/// ```
#[must_use]
pub fn configure() -> Builder {
    Builder::default()
}

/// Generates the sources for in-memory schema files with the default options; see
/// [`Builder::generate`].
///
/// # Errors
///
/// [`Error::Schema`] with every problem found in the files.
pub fn generate(sources: &[(&str, &str)]) -> Result<Vec<GeneratedFile>, Error> {
    configure().generate(sources)
}

/// Code generation options. Create one with [`configure`].
#[derive(Debug, Clone)]
pub struct Builder {
    out_dir: Option<PathBuf>,
    includes: Vec<PathBuf>,
    include_file: Option<String>,
    repliq_path: Option<String>,
    type_attributes: Vec<(String, String)>,
    emit_rerun_if_changed: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            out_dir: None,
            includes: Vec::new(),
            include_file: None,
            repliq_path: None,
            type_attributes: Vec::new(),
            emit_rerun_if_changed: true,
        }
    }
}

/// One generated Rust source file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GeneratedFile {
    /// The file name: `<package>.rs` (e.g. `market.data.rs`), or the name given to
    /// [`Builder::include_file`].
    pub name: String,
    /// The schema package (`market.data`); empty for the include file.
    pub package: String,
    /// The formatted Rust source.
    pub contents: String,
}

/// A message or enum type of a schema, with its fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TypeInfo {
    /// The fully qualified name, `package.Type`: the generated type's `Message::NAME`.
    pub name: String,
    /// `"message"` or `"enum"`.
    pub kind: &'static str,
    /// The value of `repliq::Message::FINGERPRINT` for the generated type.
    pub fingerprint: u64,
}

/// What went wrong in a [`Builder`] call.
///
/// Its `Debug` output is the rendered diagnostics too, so a build script's
/// `fn main() -> Result<(), Box<dyn std::error::Error>>` shows readable errors when it fails.
#[non_exhaustive]
pub enum Error {
    /// The schema files have errors (all of them are listed).
    Schema(Diagnostics),
    /// Writing a generated file failed.
    Io {
        /// The file being written.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// An option is invalid, or `OUT_DIR` is unset outside of a build script.
    Config(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Schema(d) => write!(f, "{d}"),
            Error::Io { path, source } => write!(f, "cannot write `{}`: {source}", path.display()),
            Error::Config(message) => f.write_str(message),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Schema(d) => write!(f, "\n{d}"),
            Error::Io { path, source } => f
                .debug_struct("Io")
                .field("path", path)
                .field("source", source)
                .finish(),
            Error::Config(message) => f.debug_tuple("Config").field(message).finish(),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A checked set of schema files.
pub(crate) struct Checked {
    pub model: Model,
    pub loaded: Loaded,
}

/// Loads and checks schema files.
pub(crate) fn load_and_check(
    source: Source<'_>,
    roots: &[String],
    sources: &mut Sources,
    sink: &mut Sink,
) -> Checked {
    let loaded = load::load(source, roots, sources, sink);
    let model = check::check(&loaded, sink);
    Checked { model, loaded }
}

/// Schema roots as strings, as given.
fn roots(schemas: &[impl AsRef<Path>]) -> Vec<String> {
    schemas
        .iter()
        .map(|p| p.as_ref().display().to_string())
        .collect()
}

impl Builder {
    /// Where [`compile`](Self::compile) writes. Default: the `OUT_DIR` environment variable that
    /// cargo sets for build scripts.
    pub fn out_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.out_dir = Some(dir.into());
        self
    }

    /// Adds a directory to search for imported files. `import "x.rq";` is looked up next to the
    /// importing file first, then in these directories in order. Default: none.
    pub fn include(mut self, dir: impl Into<PathBuf>) -> Self {
        self.includes.push(dir.into());
        self
    }

    /// Also writes a file named `name` that mounts every package as a module tree mirroring the
    /// package names (`pub mod market { include!("market.rs"); }`), so one
    /// `include!(concat!(env!("OUT_DIR"), "/<name>"));` brings in all generated types and
    /// cross-package references resolve. Default: no such file.
    pub fn include_file(mut self, name: impl Into<String>) -> Self {
        self.include_file = Some(name.into());
        self
    }

    /// The path of the `repliq` crate in the generated code, for crates that reach it through a
    /// re-export (e.g. `"::my_sdk::repliq"`). Default: `::repliq`.
    pub fn repliq_path(mut self, path: impl Into<String>) -> Self {
        self.repliq_path = Some(path.into());
        self
    }

    /// Adds attributes (e.g. `"#[derive(Eq, Hash)]"`) to the types that `matcher` selects: `"."`
    /// selects all types, `"market"` the types of package `market` (and its sub-packages),
    /// `"market.Tick"` one type. Generated types always derive `Clone`, `Debug` and
    /// `PartialEq`. Default: no extra attributes.
    pub fn type_attribute(
        mut self,
        matcher: impl Into<String>,
        attributes: impl Into<String>,
    ) -> Self {
        self.type_attributes
            .push((matcher.into(), attributes.into()));
        self
    }

    /// Whether [`compile`](Self::compile) prints `cargo:rerun-if-changed=` for every schema file
    /// and every file they import. Default: `true`.
    pub fn emit_rerun_if_changed(mut self, yes: bool) -> Self {
        self.emit_rerun_if_changed = yes;
        self
    }

    /// Generates Rust code for `schemas` and the files they import, and writes one
    /// `<package>.rs` per package (plus the [include file](Self::include_file), if set) into
    /// the [output directory](Self::out_dir).
    ///
    /// # Errors
    ///
    /// [`Error::Schema`] lists every error in the schema files; [`Error::Io`] if a file cannot be
    /// written; [`Error::Config`] for an invalid option or a missing `OUT_DIR`.
    pub fn compile(&self, schemas: &[impl AsRef<Path>]) -> Result<(), Error> {
        let out_dir = match &self.out_dir {
            Some(dir) => dir.clone(),
            None => std::env::var_os("OUT_DIR")
                .map(PathBuf::from)
                .ok_or_else(|| {
                    Error::Config(
                        "OUT_DIR is not set: call `compile` from a build script or set `out_dir`"
                            .into(),
                    )
                })?,
        };
        let (files, deps) = self.generate_from(
            Source::Fs {
                includes: &self.includes,
            },
            &roots(schemas),
        );
        if self.emit_rerun_if_changed {
            for dep in &deps {
                println!("cargo:rerun-if-changed={dep}");
            }
        }
        let files = files?;
        std::fs::create_dir_all(&out_dir).map_err(|source| Error::Io {
            path: out_dir.clone(),
            source,
        })?;
        for file in files {
            let path = out_dir.join(&file.name);
            // Leave an unchanged file alone, so cargo does not rebuild what includes it.
            if std::fs::read_to_string(&path).is_ok_and(|old| old == file.contents) {
                continue;
            }
            std::fs::write(&path, file.contents).map_err(|source| Error::Io { path, source })?;
        }
        Ok(())
    }

    /// Generates the sources for schema files on disk without writing anything. Returns the
    /// generated files and the paths of every schema file read.
    ///
    /// # Errors
    ///
    /// As [`compile`](Self::compile), except that nothing is written.
    pub fn generate_files(
        &self,
        schemas: &[impl AsRef<Path>],
    ) -> Result<Vec<GeneratedFile>, Error> {
        self.generate_from(
            Source::Fs {
                includes: &self.includes,
            },
            &roots(schemas),
        )
        .0
    }

    /// Generates the sources for in-memory schema files: `(path, text)` pairs. Imports are
    /// resolved against the paths of the pairs (relative to the importing file, then to the
    /// root of the set). Pure: reads and writes no files.
    ///
    /// # Errors
    ///
    /// [`Error::Schema`] lists every error; [`Error::Config`] for an invalid option.
    pub fn generate(&self, sources: &[(&str, &str)]) -> Result<Vec<GeneratedFile>, Error> {
        let roots: Vec<String> = sources.iter().map(|(p, _)| p.to_string()).collect();
        self.generate_from(Source::Memory(sources), &roots).0
    }

    /// Checks schema files on disk and returns their types with fingerprints, in definition
    /// order.
    ///
    /// # Errors
    ///
    /// [`Error::Schema`] lists every error in the files.
    pub fn check(&self, schemas: &[impl AsRef<Path>]) -> Result<Vec<TypeInfo>, Error> {
        let mut sources = Sources::default();
        let mut sink = Sink::default();
        let checked = load_and_check(
            Source::Fs {
                includes: &self.includes,
            },
            &roots(schemas),
            &mut sources,
            &mut sink,
        );
        if sink.has_errors() {
            return Err(Error::Schema(sink.finish(sources)));
        }
        let fps = fingerprint::all(&checked.model);
        Ok(checked
            .model
            .types
            .iter()
            .zip(fps)
            .map(|(t, fingerprint)| TypeInfo {
                name: t.fq.clone(),
                kind: match t.kind {
                    Kind::Message(_) => "message",
                    Kind::Enum(_) => "enum",
                },
                fingerprint,
            })
            .collect())
    }

    /// Generation proper; also returns the files read (for `rerun-if-changed`).
    fn generate_from(
        &self,
        source: Source<'_>,
        roots: &[String],
    ) -> (Result<Vec<GeneratedFile>, Error>, Vec<String>) {
        let mut sources = Sources::default();
        let mut sink = Sink::default();
        let checked = load_and_check(source, roots, &mut sources, &mut sink);
        let deps = checked
            .loaded
            .files
            .iter()
            .map(|f| f.display.clone())
            .collect();
        if sink.has_errors() {
            return (Err(Error::Schema(sink.finish(sources))), deps);
        }
        (self.emit(&checked.model), deps)
    }

    fn emit(&self, model: &Model) -> Result<Vec<GeneratedFile>, Error> {
        let (repliq_path, custom_path) = match &self.repliq_path {
            Some(p) => (
                syn::parse_str::<syn::Path>(p)
                    .map_err(|e| Error::Config(format!("invalid repliq_path `{p}`: {e}")))?,
                true,
            ),
            None => (syn::parse_quote!(::repliq), false),
        };
        let mut type_attributes = Vec::new();
        for (matcher, attrs) in &self.type_attributes {
            let parsed = syn::parse::Parser::parse_str(syn::Attribute::parse_outer, attrs)
                .map_err(|e| Error::Config(format!("invalid type_attribute `{attrs}`: {e}")))?;
            type_attributes.push((matcher.clone(), parsed));
        }
        let opts = Options {
            repliq_path: &repliq_path,
            custom_path,
            type_attributes: &type_attributes,
        };
        let names: Vec<String> = model
            .packages
            .iter()
            .map(|p| format!("{}.rs", p.name))
            .collect();
        let mut out: Vec<GeneratedFile> = model
            .packages
            .iter()
            .enumerate()
            .map(|(i, p)| GeneratedFile {
                name: names[i].clone(),
                package: p.name.clone(),
                contents: expand::package(model, i, &opts),
            })
            .collect();
        if let Some(name) = &self.include_file {
            if names.contains(name) {
                return Err(Error::Config(format!(
                    "the include file `{name}` has the name of a package's file"
                )));
            }
            out.push(GeneratedFile {
                name: name.clone(),
                package: String::new(),
                contents: expand::include_file(model, &names),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn every_file_read_is_a_dependency_even_when_generation_fails() {
        let sources = [
            (
                "app.rq",
                "package app; import \"lib.rq\"; message A { b: lib.B, c: Nope }",
            ),
            ("lib.rq", "package lib; message B;"),
        ];
        let (result, deps) =
            configure().generate_from(Source::Memory(&sources), &["app.rq".to_string()]);
        assert!(matches!(result, Err(Error::Schema(d)) if d.len() == 1));
        // Imports first: depth-first post-order.
        assert_eq!(deps, ["lib.rq", "app.rq"]);
    }
}
