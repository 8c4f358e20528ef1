//! The checked model: every name resolved, every type known.

use crate::ast::Loc;

/// Built-in scalar types; the schema name is also the Rust type and the fingerprint leaf name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prim {
    Bool,
    Char,
    U8,
    U16,
    U32,
    U64,
    U128,
    I8,
    I16,
    I32,
    I64,
    I128,
    F32,
    F64,
}

impl Prim {
    pub const ALL: [Prim; 14] = [
        Prim::Bool,
        Prim::Char,
        Prim::U8,
        Prim::U16,
        Prim::U32,
        Prim::U64,
        Prim::U128,
        Prim::I8,
        Prim::I16,
        Prim::I32,
        Prim::I64,
        Prim::I128,
        Prim::F32,
        Prim::F64,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Prim::Bool => "bool",
            Prim::Char => "char",
            Prim::U8 => "u8",
            Prim::U16 => "u16",
            Prim::U32 => "u32",
            Prim::U64 => "u64",
            Prim::U128 => "u128",
            Prim::I8 => "i8",
            Prim::I16 => "i16",
            Prim::I32 => "i32",
            Prim::I64 => "i64",
            Prim::I128 => "i128",
            Prim::F32 => "f32",
            Prim::F64 => "f64",
        }
    }

    pub fn from_name(name: &str) -> Option<Prim> {
        Prim::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Whether the type is totally ordered, as a map key must be.
    pub fn is_ord(self) -> bool {
        !matches!(self, Prim::F32 | Prim::F64)
    }
}

/// A resolved field type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ty {
    Prim(Prim),
    String,
    Bytes,
    Timestamp,
    List(Box<Ty>),
    Optional(Box<Ty>),
    Map(Box<Ty>, Box<Ty>),
    Array(Box<Ty>, u64),
    /// A message or enum: an index into [`Model::types`].
    Ref(usize),
    /// A type that failed to resolve (already reported).
    Error,
}

impl Ty {
    /// The type in schema syntax, with references fully qualified.
    pub fn display(&self, model: &Model) -> String {
        match self {
            Ty::Prim(p) => p.name().to_string(),
            Ty::String => "string".into(),
            Ty::Bytes => "bytes".into(),
            Ty::Timestamp => "timestamp".into(),
            Ty::List(t) => format!("list<{}>", t.display(model)),
            Ty::Optional(t) => format!("optional<{}>", t.display(model)),
            Ty::Map(k, v) => format!("map<{}, {}>", k.display(model), v.display(model)),
            Ty::Array(t, n) => format!("[{}; {n}]", t.display(model)),
            Ty::Ref(i) => model.types[*i].fq.clone(),
            Ty::Error => "{error}".into(),
        }
    }

    /// Like [`display`](Self::display), but with `bytes` written as `list<u8>`: equal strings
    /// mean equal Rust types (and fingerprints, given equal referenced types).
    pub fn canonical(&self, model: &Model) -> String {
        match self {
            Ty::Bytes => "list<u8>".into(),
            Ty::List(t) => format!("list<{}>", t.canonical(model)),
            Ty::Optional(t) => format!("optional<{}>", t.canonical(model)),
            Ty::Map(k, v) => format!("map<{}, {}>", k.canonical(model), v.canonical(model)),
            Ty::Array(t, n) => format!("[{}; {n}]", t.canonical(model)),
            other => other.display(model),
        }
    }

    /// Calls `f` on every message or enum the type refers to.
    pub fn refs(&self, f: &mut impl FnMut(usize)) {
        match self {
            Ty::List(t) | Ty::Optional(t) | Ty::Array(t, _) => t.refs(f),
            Ty::Map(k, v) => {
                k.refs(f);
                v.refs(f);
            }
            Ty::Ref(i) => f(*i),
            Ty::Prim(_) | Ty::String | Ty::Bytes | Ty::Timestamp | Ty::Error => {}
        }
    }
}

/// A body's shape: the library's own type (`named`, `tuple`, `unit`).
pub(crate) use repliq_types::Shape;

#[derive(Debug, Clone)]
pub(crate) struct FieldDef {
    pub name: String,
    pub docs: Vec<String>,
    pub ty: Ty,
    /// The field's name (for tuple fields: its type).
    pub loc: Loc,
    pub ty_loc: Loc,
}

#[derive(Debug, Clone)]
pub(crate) struct Body {
    pub shape: Shape,
    pub fields: Vec<FieldDef>,
}

#[derive(Debug, Clone)]
pub(crate) struct VariantDef {
    pub name: String,
    pub docs: Vec<String>,
    pub body: Body,
    pub loc: Loc,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Message(Body),
    Enum(Vec<VariantDef>),
}

#[derive(Debug, Clone)]
pub(crate) struct TypeDef {
    /// Index into [`Model::packages`].
    pub package: usize,
    pub name: String,
    /// `package.Name`: the message's `NAME`.
    pub fq: String,
    pub docs: Vec<String>,
    pub kind: Kind,
    /// The type's name in the schema.
    pub loc: Loc,
}

#[derive(Debug, Clone)]
pub(crate) struct PackageDef {
    /// `a.b`
    pub name: String,
    pub segments: Vec<String>,
    /// `//!` docs of every file of the package.
    pub docs: Vec<String>,
    /// File names (without directories) that contribute to the package.
    pub files: Vec<String>,
    /// Indices into [`Model::types`], in definition order.
    pub types: Vec<usize>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Model {
    pub packages: Vec<PackageDef>,
    pub types: Vec<TypeDef>,
}

impl Model {
    pub fn find(&self, fq: &str) -> Option<usize> {
        self.types.iter().position(|t| t.fq == fq)
    }
}
