//! Schema fingerprints, computed without compiling: each schema type becomes the descriptor the
//! generated Rust type will have (`repliq_types::Type`, the model the library uses), and its
//! fingerprint is the library's own [`Type::fingerprint`]. One implementation, so a generated
//! type and its schema cannot disagree.

use std::borrow::Cow;

use repliq_types::{Body as TBody, Field, Kind as TKind, List, MessageType, Ref, Type, Variant};

use crate::model::{Body, Kind, Model, Prim, Ty};

/// The `NAME` of `repliq::Timestamp`, which the schema type `timestamp` maps to.
pub(crate) const TIMESTAMP_NAME: &str = "repliq.Timestamp";

/// The descriptor of `repliq::Timestamp` (`struct Timestamp { nanos: i64 }`).
fn timestamp() -> Type {
    Type::Message(Ref::Owned(Box::new(MessageType {
        name: Cow::Borrowed(TIMESTAMP_NAME),
        kind: TKind::Struct(TBody {
            shape: repliq_types::Shape::Named,
            fields: List::Owned(vec![Field {
                name: Cow::Borrowed("nanos"),
                ty: Ref::Static(&Type::I64),
            }]),
        }),
    })))
}

/// Fingerprints of all the types of a model (index-aligned with `model.types`).
///
/// The model must be free of recursion (the checker guarantees it).
pub(crate) fn all(model: &Model) -> Vec<u64> {
    let mut memo = vec![None; model.types.len()];
    (0..model.types.len())
        .map(|i| {
            message(model, i, &mut memo)
                .map(|m| m.fingerprint())
                .unwrap_or(0)
        })
        .collect()
}

/// The descriptor of schema type `index`; `None` if it names a type that did not resolve.
fn message(
    model: &Model,
    index: usize,
    memo: &mut Vec<Option<MessageType>>,
) -> Option<MessageType> {
    if let Some(m) = &memo[index] {
        return Some(m.clone());
    }
    let def = &model.types[index];
    let kind = match &def.kind {
        Kind::Message(body) => TKind::Struct(self::body(model, body, memo)?),
        Kind::Enum(variants) => TKind::Enum(List::Owned(
            variants
                .iter()
                .map(|v| {
                    Some(Variant {
                        name: Cow::Owned(v.name.clone()),
                        body: self::body(model, &v.body, memo)?,
                    })
                })
                .collect::<Option<_>>()?,
        )),
    };
    let m = MessageType {
        name: Cow::Owned(def.fq.clone()),
        kind,
    };
    memo[index] = Some(m.clone());
    Some(m)
}

fn body(model: &Model, body: &Body, memo: &mut Vec<Option<MessageType>>) -> Option<TBody> {
    Some(TBody {
        shape: body.shape,
        fields: List::Owned(
            body.fields
                .iter()
                .map(|f| {
                    Some(Field {
                        name: Cow::Owned(f.name.clone()),
                        ty: Ref::Owned(Box::new(of_ty(model, &f.ty, memo)?)),
                    })
                })
                .collect::<Option<_>>()?,
        ),
    })
}

/// The descriptor of a field type; `None` for a type that did not resolve.
fn of_ty(model: &Model, ty: &Ty, memo: &mut Vec<Option<MessageType>>) -> Option<Type> {
    let boxed = |t: Type| Ref::Owned(Box::new(t));
    Some(match ty {
        Ty::Prim(p) => prim(*p),
        Ty::String => Type::String,
        Ty::Bytes => Type::Vec(Ref::Static(&Type::U8)),
        Ty::Timestamp => timestamp(),
        Ty::List(t) => Type::Vec(boxed(of_ty(model, t, memo)?)),
        Ty::Optional(t) => Type::Option(boxed(of_ty(model, t, memo)?)),
        Ty::Map(k, v) => Type::BtreeMap {
            key: boxed(of_ty(model, k, memo)?),
            value: boxed(of_ty(model, v, memo)?),
        },
        Ty::Array(t, n) => Type::Array {
            len: *n,
            of: boxed(of_ty(model, t, memo)?),
        },
        Ty::Ref(i) => Type::Message(Ref::Owned(Box::new(message(model, *i, memo)?))),
        Ty::Error => return None,
    })
}

fn prim(p: Prim) -> Type {
    match p {
        Prim::Bool => Type::Bool,
        Prim::Char => Type::Char,
        Prim::U8 => Type::U8,
        Prim::U16 => Type::U16,
        Prim::U32 => Type::U32,
        Prim::U64 => Type::U64,
        Prim::U128 => Type::U128,
        Prim::I8 => Type::I8,
        Prim::I16 => Type::I16,
        Prim::I32 => Type::I32,
        Prim::I64 => Type::I64,
        Prim::I128 => Type::I128,
        Prim::F32 => Type::F32,
        Prim::F64 => Type::F64,
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn primitive_descriptors_carry_the_schema_names() {
        for p in Prim::ALL {
            assert_eq!(prim(p).leaf_name(), Some(p.name()));
        }
    }
}
