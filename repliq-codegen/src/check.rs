//! Loaded files → [`Model`]: names resolved, every semantic rule checked, all errors reported.

use std::collections::HashMap;
use std::path::Path;

use crate::ast::{self, Fields, ItemKind, Loc, Name, TypeExpr};
use crate::diag::{Code, Sink, secondary};
use crate::load::Loaded;
use crate::model::{Body, FieldDef, Kind, Model, PackageDef, Prim, Shape, Ty, TypeDef, VariantDef};

/// Rust keywords (strict and reserved, 2024 edition). Fields, variants and package segments with
/// these names are emitted as raw identifiers; types may not use them.
const RUST_KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern",
    "false", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut",
    "pub", "ref", "return", "self", "Self", "static", "struct", "super", "trait", "true", "type",
    "unsafe", "use", "where", "while", "abstract", "become", "box", "do", "final", "macro",
    "override", "priv", "typeof", "unsized", "virtual", "yield", "try",
];

/// Keywords that cannot be raw identifiers: no name may be one of these.
const NEVER_NAMES: &[&str] = &["self", "Self", "super", "crate", "_"];

/// The schema's own words and built-in types: not available as type names.
const SCHEMA_WORDS: &[&str] = &[
    "package",
    "import",
    "message",
    "enum",
    "string",
    "bytes",
    "timestamp",
    "list",
    "optional",
    "map",
];

pub(crate) fn is_rust_keyword(name: &str) -> bool {
    RUST_KEYWORDS.contains(&name)
}

struct Checker<'a> {
    loaded: &'a Loaded,
    sink: &'a mut Sink,
    model: Model,
    /// `package.Name` → index into `model.types`.
    by_fq: HashMap<String, usize>,
    /// Index into `model.types` → index into `loaded.files` of the defining file.
    type_file: Vec<usize>,
    /// Index into `loaded.files` → the package name of the file.
    file_package: Vec<String>,
}

pub(crate) fn check(loaded: &Loaded, sink: &mut Sink) -> Model {
    let mut checker = Checker {
        loaded,
        sink,
        model: Model::default(),
        by_fq: HashMap::new(),
        type_file: Vec::new(),
        file_package: Vec::new(),
    };
    checker.declare();
    checker.resolve();
    checker.check_recursion();
    checker.model
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

impl Checker<'_> {
    /// Packages and type names: everything a reference can resolve to.
    fn declare(&mut self) {
        let loaded = self.loaded;
        for file in &loaded.files {
            let package = self.file_package(file);
            self.file_package.push(package);
        }
        for (index, file) in loaded.files.iter().enumerate() {
            let package = self.file_package[index].clone();
            let pkg = match self.model.packages.iter().position(|p| p.name == package) {
                Some(p) => p,
                None => {
                    self.model.packages.push(PackageDef {
                        segments: package.split('.').map(str::to_string).collect(),
                        name: package.clone(),
                        docs: Vec::new(),
                        files: Vec::new(),
                        types: Vec::new(),
                    });
                    self.model.packages.len() - 1
                }
            };
            let file_name = Path::new(&file.display).file_name().map_or_else(
                || file.display.clone(),
                |n| n.to_string_lossy().into_owned(),
            );
            let def = &mut self.model.packages[pkg];
            def.docs.extend(file.ast.docs.iter().cloned());
            def.files.push(file_name);
            for item in &file.ast.items {
                self.declare_type(index, pkg, &package, item);
            }
        }
    }

    /// The package of a file; reports a missing or repeated declaration.
    fn file_package(&mut self, file: &crate::load::LoadedFile) -> String {
        let packages = &file.ast.packages;
        let Some(first) = packages.first() else {
            if file.ast.unreadable {
                return String::new();
            }
            self.sink.error(
                Code::MissingPackage,
                "missing `package` declaration",
                &Loc {
                    file: file.id,
                    range: 0..0,
                },
                "expected `package name;` at the top of the file",
            );
            return String::new();
        };
        for again in &packages[1..] {
            self.sink
                .error(
                    Code::Duplicate,
                    "a file declares its package only once",
                    &again.loc,
                    "second `package` declaration",
                )
                .labels
                .push(secondary(&first.loc, "first declared here"));
        }
        for segment in &first.segments {
            self.never_name(segment, "package name");
        }
        first
            .segments
            .iter()
            .map(|s| s.text.as_str())
            .collect::<Vec<_>>()
            .join(".")
    }

    fn never_name(&mut self, name: &Name, what: &str) -> bool {
        if NEVER_NAMES.contains(&name.text.as_str()) {
            self.sink.error(
                Code::ReservedWord,
                format!("`{}` is reserved and cannot be a {what}", name.text),
                &name.loc,
                "reserved word",
            );
            return true;
        }
        false
    }

    fn declare_type(&mut self, file: usize, pkg: usize, package: &str, item: &ast::Item) {
        let name = &item.name;
        if is_rust_keyword(&name.text)
            || SCHEMA_WORDS.contains(&name.text.as_str())
            || Prim::from_name(&name.text).is_some()
        {
            self.sink.error(
                Code::ReservedWord,
                format!("`{}` is reserved and cannot be a type name", name.text),
                &name.loc,
                "reserved word",
            );
        }
        let fq = if package.is_empty() {
            name.text.clone()
        } else {
            format!("{package}.{}", name.text)
        };
        if let Some(&first) = self.by_fq.get(&fq) {
            let first_loc = self.model.types[first].loc.clone();
            self.sink
                .error(
                    Code::Duplicate,
                    format!("the type `{fq}` is defined more than once"),
                    &name.loc,
                    "defined again here",
                )
                .labels
                .push(secondary(&first_loc, "first defined here"));
            return;
        }
        let index = self.model.types.len();
        self.by_fq.insert(fq.clone(), index);
        self.type_file.push(file);
        self.model.packages[pkg].types.push(index);
        self.model.types.push(TypeDef {
            package: pkg,
            name: name.text.clone(),
            fq,
            docs: item.docs.clone(),
            kind: Kind::Message(Body {
                shape: Shape::Unit,
                fields: Vec::new(),
            }),
            loc: name.loc.clone(),
        });
    }

    /// Resolves the fields of every declared type.
    fn resolve(&mut self) {
        let loaded = self.loaded;
        for (file_index, file) in loaded.files.iter().enumerate() {
            let mut seen_names: HashMap<&str, Vec<usize>> = HashMap::new();
            for item in &file.ast.items {
                let fq = match self.file_package[file_index].as_str() {
                    "" => item.name.text.clone(),
                    p => format!("{p}.{}", item.name.text),
                };
                let Some(&index) = self.by_fq.get(&fq) else {
                    continue;
                };
                if self.type_file[index] != file_index
                    || self.model.types[index].loc != item.name.loc
                {
                    continue; // a duplicate, already reported
                }
                seen_names
                    .entry(item.name.text.as_str())
                    .or_default()
                    .push(index);
                let kind = match &item.kind {
                    ItemKind::Message(fields) => Kind::Message(self.body(file_index, fields)),
                    ItemKind::Enum(variants) => {
                        if variants.is_empty() {
                            self.sink.error(
                                Code::Unsupported,
                                format!("the enum `{}` has no variants", item.name.text),
                                &item.name.loc,
                                "an enum needs at least one variant",
                            );
                        }
                        let mut seen: HashMap<&str, &Loc> = HashMap::new();
                        let mut out = Vec::new();
                        for v in variants {
                            self.never_name(&v.name, "variant name");
                            if let Some(first) = seen.get(v.name.text.as_str()) {
                                let first = (*first).clone();
                                self.sink
                                    .error(
                                        Code::Duplicate,
                                        format!(
                                            "the variant `{}` is defined more than once",
                                            v.name.text
                                        ),
                                        &v.name.loc,
                                        "defined again here",
                                    )
                                    .labels
                                    .push(secondary(&first, "first defined here"));
                            } else {
                                seen.insert(&v.name.text, &v.name.loc);
                            }
                            out.push(VariantDef {
                                name: v.name.text.clone(),
                                docs: v.docs.clone(),
                                body: self.body(file_index, &v.fields),
                                loc: v.name.loc.clone(),
                            });
                        }
                        Kind::Enum(out)
                    }
                };
                self.model.types[index].kind = kind;
            }
            self.check_rkyv_names(&seen_names);
        }
    }

    /// rkyv generates `ArchivedX` and `XResolver` next to every type `X`.
    fn check_rkyv_names(&mut self, names: &HashMap<&str, Vec<usize>>) {
        for (name, indices) in names {
            let clash = name
                .strip_prefix("Archived")
                .filter(|base| names.contains_key(base))
                .map(|base| format!("Archived{base}"))
                .or_else(|| {
                    name.strip_suffix("Resolver")
                        .filter(|base| names.contains_key(base))
                        .map(|base| format!("{base}Resolver"))
                });
            if let Some(clash) = clash {
                let loc = self.model.types[indices[0]].loc.clone();
                self.sink.error(
                    Code::ReservedWord,
                    format!("`{clash}` is the name of a type that rkyv generates for another type of this file"),
                    &loc,
                    "clashes with a generated name",
                );
            }
        }
    }

    fn body(&mut self, file: usize, fields: &Fields) -> Body {
        let (shape, list) = match fields {
            Fields::Named(list) => (Shape::Named, list.as_slice()),
            Fields::Tuple(list) => (Shape::Tuple, list.as_slice()),
            Fields::Unit => (Shape::Unit, &[][..]),
        };
        let mut seen: HashMap<&str, &Loc> = HashMap::new();
        let mut out = Vec::new();
        for field in list {
            if shape == Shape::Named {
                self.never_name(&field.name, "field name");
                if let Some(first) = seen.get(field.name.text.as_str()) {
                    let first = (*first).clone();
                    self.sink
                        .error(
                            Code::Duplicate,
                            format!("the field `{}` is defined more than once", field.name.text),
                            &field.name.loc,
                            "defined again here",
                        )
                        .labels
                        .push(secondary(&first, "first defined here"));
                } else {
                    seen.insert(&field.name.text, &field.name.loc);
                }
            }
            out.push(FieldDef {
                name: field.name.text.clone(),
                docs: field.docs.clone(),
                ty: self.ty(file, &field.ty),
                loc: field.name.loc.clone(),
                ty_loc: field.ty.loc().clone(),
            });
        }
        Body { shape, fields: out }
    }

    fn ty(&mut self, file: usize, expr: &TypeExpr) -> Ty {
        let (segments, args, loc) = match expr {
            TypeExpr::Array { elem, len, .. } => {
                return Ty::Array(Box::new(self.ty(file, elem)), *len);
            }
            TypeExpr::Path {
                segments,
                args,
                loc,
            } => (segments, args, loc),
        };
        if segments.is_empty() {
            return Ty::Error; // an unsupported construct, already reported
        }
        if let [single] = segments.as_slice() {
            let name = single.text.as_str();
            let arity = match name {
                "list" | "optional" => Some(1),
                "map" => Some(2),
                _ => None,
            };
            if let Some(arity) = arity {
                if args.len() != arity {
                    self.sink.error(
                        Code::Syntax,
                        format!(
                            "`{name}` takes {}, but {} given",
                            plural(arity, "type argument"),
                            match args.len() {
                                1 => "1 was".to_string(),
                                n => format!("{n} were"),
                            }
                        ),
                        loc,
                        format!(
                            "expected `{name}<{}>`",
                            if arity == 1 { "T" } else { "K, V" }
                        ),
                    );
                    return Ty::Error;
                }
                let mut args = args.iter().map(|a| self.ty(file, a));
                let first = Box::new(args.next().unwrap_or(Ty::Error));
                return match name {
                    "list" => Ty::List(first),
                    "optional" => Ty::Optional(first),
                    _ => {
                        let value = Box::new(args.next().unwrap_or(Ty::Error));
                        self.check_map_key(&first, &args_key_loc(expr));
                        Ty::Map(first, value)
                    }
                };
            }
            let builtin = match name {
                "string" => Some(Ty::String),
                "bytes" => Some(Ty::Bytes),
                "timestamp" => Some(Ty::Timestamp),
                _ => Prim::from_name(name).map(Ty::Prim),
            };
            if let Some(builtin) = builtin {
                if !args.is_empty() {
                    self.no_args(name, loc);
                }
                return builtin;
            }
        }
        let path: Vec<&str> = segments.iter().map(|s| s.text.as_str()).collect();
        let package = &self.file_package[file];
        let fq = match path.as_slice() {
            [one] if !package.is_empty() => format!("{package}.{one}"),
            _ => path.join("."),
        };
        if let Some(&index) = self.by_fq.get(&fq) {
            if !args.is_empty() {
                self.no_args(&fq, loc);
            }
            let defined_in = self.type_file[index];
            let visible =
                defined_in == file || self.loaded.files[file].imports.contains(&Some(defined_in));
            if !visible {
                let def_file = &self.loaded.files[defined_in].display;
                let report = self.sink.error(
                    Code::MissingImport,
                    format!("`{fq}` is defined in `{def_file}`, which this file does not import"),
                    loc,
                    "used here without an import",
                );
                report.notes.push(format!(
                    "help: add `import \"{}\";` to this file",
                    relative_import(&self.loaded.files[file].display, def_file)
                ));
                return Ty::Error;
            }
            return Ty::Ref(index);
        }
        let report = self.sink.error(
            Code::UnknownType,
            format!("unknown type `{}`", path.join(".")),
            loc,
            "not a built-in type, nor a message or enum visible here",
        );
        if let [one] = path.as_slice() {
            let mut candidates: Vec<&str> = self
                .model
                .types
                .iter()
                .filter(|t| t.name == *one && t.fq != fq)
                .map(|t| t.fq.as_str())
                .collect();
            candidates.sort_unstable();
            if let Some(first) = candidates.first() {
                report.notes.push(format!(
                    "help: types of other packages are named in full: `{first}`"
                ));
            }
        }
        Ty::Error
    }

    fn no_args(&mut self, name: &str, loc: &Loc) {
        self.sink.error(
            Code::Syntax,
            format!("`{name}` takes no type arguments"),
            loc,
            "remove the `<...>`",
        );
    }

    fn check_map_key(&mut self, key: &Ty, loc: &Loc) {
        let ok = match key {
            Ty::Prim(p) => p.is_ord(),
            Ty::String | Ty::Error => true,
            _ => false,
        };
        if !ok {
            self.sink.error(
                Code::Unsupported,
                "unsupported map key type",
                loc,
                "map keys must be `bool`, `char`, an integer or `string`",
            );
        }
    }

    /// A type that contains itself (directly or through other types) has no finite fingerprint.
    fn check_recursion(&mut self) {
        let n = self.model.types.len();
        let mut edges: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, t) in self.model.types.iter().enumerate() {
            let mut add = |j| edges[i].push(j);
            match &t.kind {
                Kind::Message(body) => body.fields.iter().for_each(|f| f.ty.refs(&mut add)),
                Kind::Enum(vs) => vs
                    .iter()
                    .flat_map(|v| &v.body.fields)
                    .for_each(|f| f.ty.refs(&mut add)),
            }
        }
        // Depth-first search; a back edge closes a cycle. Each cycle is reported once, at its
        // first type in definition order.
        let mut state = vec![0u8; n]; // 0 new, 1 on stack, 2 done
        let mut reported: Vec<Vec<usize>> = Vec::new();
        for start in 0..n {
            let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
            if state[start] != 0 {
                continue;
            }
            state[start] = 1;
            while let Some(&mut (node, ref mut next)) = stack.last_mut() {
                if let Some(&to) = edges[node].get(*next) {
                    *next += 1;
                    match state[to] {
                        0 => {
                            state[to] = 1;
                            stack.push((to, 0));
                        }
                        1 => {
                            let pos = stack.iter().position(|&(s, _)| s == to).unwrap_or(0);
                            let mut members: Vec<usize> =
                                stack[pos..].iter().map(|&(s, _)| s).collect();
                            let mut key = members.clone();
                            key.sort_unstable();
                            if !reported.contains(&key) {
                                reported.push(key);
                                let first = *members.iter().min().unwrap_or(&to);
                                let at = members.iter().position(|&m| m == first).unwrap_or(0);
                                members.rotate_left(at);
                                members.push(first);
                                let chain: Vec<&str> = members
                                    .iter()
                                    .map(|&m| self.model.types[m].fq.as_str())
                                    .collect();
                                let loc = self.model.types[first].loc.clone();
                                self.sink
                                    .error(
                                        Code::RecursiveType,
                                        format!("recursive type: {}", chain.join(" -> ")),
                                        &loc,
                                        "this type contains itself",
                                    )
                                    .notes
                                    .push(
                                        "a message's fingerprint covers the types it contains, so it cannot contain itself"
                                            .into(),
                                    );
                            }
                        }
                        _ => {}
                    }
                } else {
                    state[node] = 2;
                    stack.pop();
                }
            }
        }
    }
}

/// The location of a map's key type (the first argument), for errors about it.
fn args_key_loc(expr: &TypeExpr) -> Loc {
    match expr {
        TypeExpr::Path { args, loc, .. } => args
            .first()
            .map_or_else(|| loc.clone(), |a| a.loc().clone()),
        TypeExpr::Array { loc, .. } => loc.clone(),
    }
}

/// The path to write in `import "..."` in `importer` to reach `target` (both as displayed).
fn relative_import(importer: &str, target: &str) -> String {
    let from: Vec<&str> = Path::new(importer)
        .parent()
        .map(|p| p.iter().filter_map(|c| c.to_str()).collect())
        .unwrap_or_default();
    let to: Vec<&str> = Path::new(target)
        .iter()
        .filter_map(|c| c.to_str())
        .collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<&str> = vec![".."; from.len() - common];
    parts.extend(&to[common..]);
    parts.join("/")
}
