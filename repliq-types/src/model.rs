//! The type model: descriptors of message types, their archived layout and fingerprint.

use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;

use crate::Hasher;

/// A `'static` borrowed value (constant descriptors) or an owned one (descriptors read back from
/// a file). Serialized as the value itself.
pub enum Ref<T: 'static> {
    /// A constant.
    Static(&'static T),
    /// Read from a file.
    Owned(Box<T>),
}

impl<T> Deref for Ref<T> {
    type Target = T;
    fn deref(&self) -> &T {
        match self {
            Ref::Static(t) => t,
            Ref::Owned(t) => t,
        }
    }
}

/// A `'static` slice or an owned vector; serialized as a sequence.
pub enum List<T: 'static> {
    /// A constant.
    Static(&'static [T]),
    /// Read from a file.
    Owned(Vec<T>),
}

impl<T> Deref for List<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match self {
            List::Static(t) => t,
            List::Owned(t) => t,
        }
    }
}

macro_rules! wrapper_impls {
    ($w:ident, $target:ty, $owned:expr) => {
        impl<T: Clone> Clone for $w<T> {
            fn clone(&self) -> Self {
                match self {
                    $w::Static(t) => $w::Static(t),
                    $w::Owned(t) => $w::Owned(t.clone()),
                }
            }
        }
        impl<T: fmt::Debug> fmt::Debug for $w<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&**self, f)
            }
        }
        impl<T: PartialEq> PartialEq for $w<T> {
            fn eq(&self, other: &Self) -> bool {
                **self == **other
            }
        }
        impl<T: Eq> Eq for $w<T> {}
        #[cfg(feature = "serde")]
        impl<T: serde::Serialize> serde::Serialize for $w<T> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                (**self).serialize(s)
            }
        }
        #[cfg(feature = "serde")]
        impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for $w<T> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                <$target>::deserialize(d).map($owned)
            }
        }
    };
}

wrapper_impls!(Ref, Box<T>, Ref::Owned);
wrapper_impls!(List, Vec<T>, List::Owned);

/// The descriptor of a field type or message type. In JSON (`schema.json`), leaves are strings
/// (`"u32"`, `"string"`) and the others one-key objects (`{"vec": "u8"}`); see `docs/FORMAT.md`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum Type {
    /// `bool`
    Bool,
    /// `char`
    Char,
    /// `u8`
    U8,
    /// `u16`
    U16,
    /// `u32`
    U32,
    /// `u64`
    U64,
    /// `u128`
    U128,
    /// `i8`
    I8,
    /// `i16`
    I16,
    /// `i32`
    I32,
    /// `i64`
    I64,
    /// `i128`
    I128,
    /// `f32`
    F32,
    /// `f64`
    F64,
    /// `usize` (archived as 32 bits)
    Usize,
    /// `isize` (archived as 32 bits)
    Isize,
    /// `()`
    Unit,
    /// `String`
    String,
    /// `std::time::Duration`
    Duration,
    /// `Vec<T>`
    Vec(Ref<Type>),
    /// `Option<T>`
    Option(Ref<Type>),
    /// `Box<T>`
    Box(Ref<Type>),
    /// `[T; N]`
    Array {
        /// `N`
        len: u64,
        /// `T`
        of: Ref<Type>,
    },
    /// `(A, B, ..)`
    Tuple(List<Ref<Type>>),
    /// `HashMap<K, V>`
    HashMap {
        /// `K`
        key: Ref<Type>,
        /// `V`
        value: Ref<Type>,
    },
    /// `BTreeMap<K, V>`
    BtreeMap {
        /// `K`
        key: Ref<Type>,
        /// `V`
        value: Ref<Type>,
    },
    /// `HashSet<T>`
    HashSet(Ref<Type>),
    /// `BTreeSet<T>`
    BtreeSet(Ref<Type>),
    /// A `#[repliq::message]` struct or enum.
    Message(Ref<MessageType>),
}

/// A struct or enum marked `#[repliq::message]`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct MessageType {
    /// The message type's `NAME` (`repliq::Message::NAME`).
    pub name: Cow<'static, str>,
    /// Struct or enum, with the fields.
    #[cfg_attr(feature = "serde", serde(flatten))]
    pub kind: Kind,
}

/// Whether a [`MessageType`] is a struct or an enum.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum Kind {
    /// A struct and its fields.
    Struct(Body),
    /// An enum and its variants, in order (the archived tag is the position).
    Enum(List<Variant>),
}

/// The fields of a struct or of an enum variant.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Body {
    /// Named, tuple or unit.
    pub shape: Shape,
    /// The fields in declaration order.
    pub fields: List<Field>,
}

/// How a struct or variant declares its fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Shape {
    /// `{ a: A, .. }`
    Named,
    /// `(A, ..)`; fields are named `0`, `1`, …
    Tuple,
    /// No fields.
    Unit,
}

impl Shape {
    /// The word that goes into the fingerprint (and into `schema.json`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Shape::Named => "named",
            Shape::Tuple => "tuple",
            Shape::Unit => "unit",
        }
    }
}

/// One field: its name (without `r#`; the position for tuple fields) and type.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Field {
    /// The name.
    pub name: Cow<'static, str>,
    /// The type.
    #[cfg_attr(feature = "serde", serde(rename = "type"))]
    pub ty: Ref<Type>,
}

/// One enum variant.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Variant {
    /// The name (without `r#`).
    pub name: Cow<'static, str>,
    /// Its fields.
    #[cfg_attr(feature = "serde", serde(flatten))]
    pub body: Body,
}

impl Type {
    /// The leaf name used by the fingerprint, for types without parameters.
    #[must_use]
    pub const fn leaf_name(&self) -> Option<&'static str> {
        Some(match self {
            Type::Bool => "bool",
            Type::Char => "char",
            Type::U8 => "u8",
            Type::U16 => "u16",
            Type::U32 => "u32",
            Type::U64 => "u64",
            Type::U128 => "u128",
            Type::I8 => "i8",
            Type::I16 => "i16",
            Type::I32 => "i32",
            Type::I64 => "i64",
            Type::I128 => "i128",
            Type::F32 => "f32",
            Type::F64 => "f64",
            Type::Usize => "usize",
            Type::Isize => "isize",
            Type::Unit => "unit",
            Type::String => "string",
            Type::Duration => "duration",
            _ => return None,
        })
    }

    /// The structural fingerprint of this type, by the algorithm of the
    /// [fingerprint algorithm](crate#the-fingerprint). For a descriptor `T::DESCRIPTOR` it equals
    /// `T::FINGERPRINT`.
    #[must_use]
    pub fn fingerprint(&self) -> u64 {
        let h = Hasher::new();
        if let Some(name) = self.leaf_name() {
            return h.str(name).finish();
        }
        match self {
            Type::Vec(t) => h.str("vec").u64(t.fingerprint()),
            Type::Option(t) => h.str("option").u64(t.fingerprint()),
            Type::Box(t) => h.str("box").u64(t.fingerprint()),
            Type::HashSet(t) => h.str("hash_set").u64(t.fingerprint()),
            Type::BtreeSet(t) => h.str("btree_set").u64(t.fingerprint()),
            Type::Array { len, of } => h.str("array").u64(*len).u64(of.fingerprint()),
            Type::Tuple(elems) => elems
                .iter()
                .fold(h.str("tuple").u64(elems.len() as u64), |h, t| {
                    h.u64(t.fingerprint())
                }),
            Type::HashMap { key, value } => h
                .str("hash_map")
                .u64(key.fingerprint())
                .u64(value.fingerprint()),
            Type::BtreeMap { key, value } => h
                .str("btree_map")
                .u64(key.fingerprint())
                .u64(value.fingerprint()),
            Type::Message(m) => return m.fingerprint(),
            _ => unreachable!("leaves are handled above"),
        }
        .finish()
    }

    /// Size and alignment of the archived form, in bytes (`docs/FORMAT.md`, "Archived values").
    #[must_use]
    pub fn layout(&self) -> Layout {
        let prim = |n| Layout { size: n, align: n };
        match self {
            Type::Bool | Type::U8 | Type::I8 => prim(1),
            Type::U16 | Type::I16 => prim(2),
            Type::Char | Type::U32 | Type::I32 | Type::F32 | Type::Usize | Type::Isize => prim(4),
            Type::U64 | Type::I64 | Type::F64 => prim(8),
            Type::U128 | Type::I128 => prim(16),
            Type::Unit => Layout { size: 0, align: 1 },
            Type::String | Type::Vec(_) | Type::BtreeMap { .. } | Type::BtreeSet(_) => {
                Layout { size: 8, align: 4 }
            }
            Type::Box(_) => prim(4),
            Type::HashMap { .. } | Type::HashSet(_) => Layout { size: 12, align: 4 },
            Type::Duration => Layout { size: 16, align: 8 },
            Type::Option(t) => Layout::tagged([&**t]),
            Type::Array { len, of } => {
                let l = of.layout();
                Layout {
                    size: l
                        .size
                        .saturating_mul(usize::try_from(*len).unwrap_or(usize::MAX)),
                    align: l.align,
                }
            }
            Type::Tuple(elems) => Layout::record(elems.iter().map(|t| &**t)).0,
            Type::Message(m) => match &m.kind {
                Kind::Struct(body) => Layout::record(body.fields.iter().map(|f| &*f.ty)).0,
                Kind::Enum(variants) => {
                    let mut out = Layout { size: 1, align: 1 };
                    for v in variants.iter() {
                        let l = Layout::tagged(v.body.fields.iter().map(|f| &*f.ty));
                        out.size = out.size.max(l.size);
                        out.align = out.align.max(l.align);
                    }
                    out.size = align_up(out.size, out.align);
                    out
                }
            },
        }
    }
}

/// The archived size and alignment of a type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Size in bytes (a multiple of `align`).
    pub size: usize,
    /// Alignment in bytes (a power of two).
    pub align: usize,
}

/// `x` rounded up to a multiple of `align`.
#[must_use]
pub fn align_up(x: usize, align: usize) -> usize {
    x.div_ceil(align).saturating_mul(align)
}

impl Layout {
    /// A `#[repr(C)]` struct of `fields`: its layout and each field's offset.
    #[must_use]
    pub fn record<'a>(fields: impl Iterator<Item = &'a Type>) -> (Layout, Vec<usize>) {
        Self::record_from(0, 1, fields)
    }

    fn record_from<'a>(
        mut size: usize,
        mut align: usize,
        fields: impl Iterator<Item = &'a Type>,
    ) -> (Layout, Vec<usize>) {
        let mut offsets = Vec::new();
        for f in fields {
            let l = f.layout();
            size = align_up(size, l.align);
            offsets.push(size);
            size = size.saturating_add(l.size);
            align = align.max(l.align);
        }
        (
            Layout {
                size: align_up(size, align),
                align,
            },
            offsets,
        )
    }

    /// A `#[repr(C)]` struct of a `u8` tag followed by `fields` (one variant of a `#[repr(u8)]`
    /// enum).
    #[must_use]
    pub fn tagged<'a>(fields: impl IntoIterator<Item = &'a Type>) -> Layout {
        Self::tagged_offsets(fields).0
    }

    /// The layout and field offsets of [`Layout::tagged`].
    #[must_use]
    pub fn tagged_offsets<'a>(fields: impl IntoIterator<Item = &'a Type>) -> (Layout, Vec<usize>) {
        Self::record_from(1, 1, fields.into_iter())
    }
}

impl MessageType {
    /// The fingerprint of the message type (see the [fingerprint algorithm](crate#the-fingerprint)).
    #[must_use]
    pub fn fingerprint(&self) -> u64 {
        let h = Hasher::new().str("repliq.message.v1");
        match &self.kind {
            Kind::Struct(body) => body.hash(h.str("struct").str(&self.name)),
            Kind::Enum(variants) => variants.iter().fold(
                h.str("enum").str(&self.name).u64(variants.len() as u64),
                |h, v| v.body.hash(h.str(&v.name)),
            ),
        }
        .finish()
    }
}

impl Body {
    fn hash(&self, h: Hasher) -> Hasher {
        self.fields.iter().fold(
            h.str(self.shape.as_str()).u64(self.fields.len() as u64),
            |h, f| h.str(&f.name).u64(f.ty.fingerprint()),
        )
    }
}
