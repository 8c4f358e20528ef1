//! Loading schema files and, transitively, the files they import.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use crate::ast;
use crate::diag::{Code, Sink, Sources};
use crate::parse::parse_file;

/// Where schema text comes from.
pub(crate) enum Source<'a> {
    /// The file system; imports are looked up next to the importing file, then in `includes`.
    Fs { includes: &'a [PathBuf] },
    /// An in-memory set of `(path, text)` pairs; imports are resolved against the paths.
    Memory(&'a [(&'a str, &'a str)]),
}

/// One loaded schema file.
#[derive(Debug)]
pub(crate) struct LoadedFile {
    /// The id of the file in [`Sources`].
    pub id: usize,
    /// The path as shown to users (and printed for `rerun-if-changed`).
    pub display: String,
    pub ast: ast::File,
    /// For each of `ast.imports`: the index of the imported file in [`Loaded::files`], if found.
    pub imports: Vec<Option<usize>>,
    /// For each of `ast.imports`: the key of the imported file, if found.
    import_keys: Vec<Option<String>>,
}

/// Every file reached from the roots, in depth-first post-order (imports before importers).
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    pub files: Vec<LoadedFile>,
    /// Indices into `files` of the files that were asked for.
    pub roots: Vec<usize>,
}

struct Loader<'a> {
    source: Source<'a>,
    sources: &'a mut Sources,
    sink: &'a mut Sink,
    /// Canonical key → index into `out.files`.
    done: HashMap<String, usize>,
    /// The chain of files being loaded: (key, display).
    stack: Vec<(String, String)>,
    out: Loaded,
}

pub(crate) fn load(
    source: Source<'_>,
    roots: &[String],
    sources: &mut Sources,
    sink: &mut Sink,
) -> Loaded {
    // proc-macro2 keeps the text of every tokenized string in a thread-local map for as long as
    // the thread lives (that is how its spans know their line and column). Tokenizing on a
    // short-lived thread frees it when the run is over; only byte ranges leave the thread.
    std::thread::scope(|scope| {
        scope
            .spawn(|| load_here(source, roots, sources, sink))
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

fn load_here(
    source: Source<'_>,
    roots: &[String],
    sources: &mut Sources,
    sink: &mut Sink,
) -> Loaded {
    let mut loader = Loader {
        source,
        sources,
        sink,
        done: HashMap::new(),
        stack: Vec::new(),
        out: Loaded::default(),
    };
    for root in roots {
        match loader.read(root) {
            Ok((key, text)) => {
                if let Some(&index) = loader.done.get(&key) {
                    if !loader.out.roots.contains(&index) {
                        loader.out.roots.push(index);
                    }
                    continue;
                }
                let index = loader.load_file(key, display(root), text);
                loader.out.roots.push(index);
            }
            Err(e) => loader
                .sink
                .error_unlocated(Code::Io, format!("cannot read `{root}`: {e}")),
        }
    }
    let Loader { done, mut out, .. } = loader;
    for file in &mut out.files {
        file.imports = file
            .import_keys
            .iter()
            .map(|key| key.as_ref().and_then(|k| done.get(k).copied()))
            .collect();
    }
    out
}

fn display(path: &str) -> String {
    path.replace('\\', "/")
}

/// `a/b/../c` → `a/c`, without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

impl Loader<'_> {
    /// Reads `path` and returns its canonical key and text.
    fn read(&self, path: &str) -> Result<(String, String), String> {
        match &self.source {
            Source::Fs { .. } => {
                let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
                let key = std::fs::canonicalize(path)
                    .map_err(|e| e.to_string())?
                    .display()
                    .to_string();
                Ok((key, text))
            }
            Source::Memory(files) => {
                let wanted = normalize(Path::new(path));
                files
                    .iter()
                    .find(|(name, _)| normalize(Path::new(name)) == wanted)
                    .map(|(_, text)| (display(&wanted.display().to_string()), text.to_string()))
                    .ok_or_else(|| "no such file in the given sources".to_string())
            }
        }
    }

    /// The candidates for `import "path"` in the file shown as `importer`.
    fn candidates(&self, importer: &str, path: &str) -> Vec<String> {
        let dir = Path::new(importer).parent().unwrap_or(Path::new(""));
        let mut out = vec![normalize(&dir.join(path))];
        if let Source::Fs { includes } = &self.source {
            out.extend(includes.iter().map(|inc| normalize(&inc.join(path))));
        } else {
            out.push(normalize(Path::new(path)));
        }
        out.into_iter()
            .map(|p| display(&p.display().to_string()))
            .collect()
    }

    fn load_file(&mut self, key: String, display: String, text: String) -> usize {
        let id = self.sources.add(display.clone(), text);
        let ast = parse_file(id, self.sources.text(id), self.sink);
        self.stack.push((key.clone(), display.clone()));
        let mut import_keys = Vec::new();
        for import in &ast.imports {
            import_keys.push(self.import(&display, import));
        }
        self.stack.pop();
        let index = self.out.files.len();
        self.out.files.push(LoadedFile {
            id,
            display,
            ast,
            imports: Vec::new(),
            import_keys,
        });
        self.done.insert(key, index);
        index
    }

    /// Loads an imported file (unless loaded already) and returns its key.
    fn import(&mut self, importer: &str, import: &ast::Import) -> Option<String> {
        let candidates = self.candidates(importer, &import.path);
        let found = candidates
            .iter()
            .find_map(|c| self.read(c).ok().map(|(key, text)| (c.clone(), key, text)));
        let Some((path, key, text)) = found else {
            let report = self.sink.error(
                Code::ImportNotFound,
                format!("cannot find imported file `{}`", import.path),
                &import.loc,
                "imported here",
            );
            report
                .notes
                .push(format!("looked for: {}", candidates.join(", ")));
            return None;
        };
        if let Some(pos) = self.stack.iter().position(|(k, _)| *k == key) {
            let mut chain: Vec<&str> = self.stack[pos..].iter().map(|(_, d)| d.as_str()).collect();
            chain.push(&self.stack[pos].1);
            self.sink.error(
                Code::ImportCycle,
                format!("import cycle: {}", chain.join(" -> ")),
                &import.loc,
                "this import closes the cycle",
            );
            // Still a valid link: the types stay visible, so the cycle is the only error.
            return Some(key);
        }
        if !self.done.contains_key(&key) {
            self.load_file(key.clone(), path, text);
        }
        Some(key)
    }
}
