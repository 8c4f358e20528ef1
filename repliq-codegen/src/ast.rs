//! The syntax tree of a schema file, as the parser produces it (nothing resolved yet).

use std::ops::Range;

/// A location: a byte range in one source file of the [`Sources`](crate::diag::Sources).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Loc {
    pub file: usize,
    pub range: Range<usize>,
}

/// An identifier as written (without any `r#`), with its location.
#[derive(Debug, Clone)]
pub(crate) struct Name {
    pub text: String,
    pub loc: Loc,
}

/// One parsed schema file.
#[derive(Debug, Default)]
pub(crate) struct File {
    /// `//!` comments at the top of the file.
    pub docs: Vec<String>,
    /// Every `package` declaration (exactly one is valid; the checker reports the others).
    pub packages: Vec<Package>,
    pub imports: Vec<Import>,
    pub items: Vec<Item>,
    /// The text could not be tokenized (reported); the file is empty.
    pub unreadable: bool,
}

#[derive(Debug)]
pub(crate) struct Package {
    pub segments: Vec<Name>,
    pub loc: Loc,
}

#[derive(Debug)]
pub(crate) struct Import {
    pub path: String,
    pub loc: Loc,
}

#[derive(Debug)]
pub(crate) struct Item {
    pub docs: Vec<String>,
    pub name: Name,
    pub kind: ItemKind,
}

#[derive(Debug)]
pub(crate) enum ItemKind {
    Message(Fields),
    Enum(Vec<Variant>),
}

#[derive(Debug)]
pub(crate) enum Fields {
    /// `{ a: T, b: U }`
    Named(Vec<Field>),
    /// `(T, U)`; the fields are named `0`, `1`, ... and located at their types.
    Tuple(Vec<Field>),
    /// Nothing: `message Heartbeat;` or a variant without data.
    Unit,
}

#[derive(Debug)]
pub(crate) struct Field {
    pub docs: Vec<String>,
    pub name: Name,
    pub ty: TypeExpr,
}

#[derive(Debug)]
pub(crate) struct Variant {
    pub docs: Vec<String>,
    pub name: Name,
    pub fields: Fields,
}

/// A type as written.
#[derive(Debug)]
pub(crate) enum TypeExpr {
    /// `name`, `pkg.Name`, `list<T>`, `map<K, V>`.
    Path {
        segments: Vec<Name>,
        args: Vec<TypeExpr>,
        loc: Loc,
    },
    /// `[T; N]`
    Array {
        elem: Box<TypeExpr>,
        len: u64,
        loc: Loc,
    },
}

impl TypeExpr {
    pub fn loc(&self) -> &Loc {
        match self {
            TypeExpr::Path { loc, .. } | TypeExpr::Array { loc, .. } => loc,
        }
    }
}
