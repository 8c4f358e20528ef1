//! The checked model of the item under `#[repliq::message]`.

use proc_macro2::Span;
use syn::{Attribute, Fields, Ident, Type};

/// A struct or an enum, as far as the message layout is concerned.
pub struct Input<'a> {
    pub ident: &'a Ident,
    pub attrs: &'a [Attribute],
    pub generics: &'a syn::Generics,
    pub data: Data<'a>,
}

pub enum Data<'a> {
    Struct(Body<'a>),
    Enum {
        enum_token_span: Span,
        variants: Vec<Variant<'a>>,
    },
}

pub struct Variant<'a> {
    pub original: &'a syn::Variant,
    pub body: Body<'a>,
}

/// The fields of a struct or of one enum variant.
pub struct Body<'a> {
    pub shape: Shape,
    pub fields: Vec<Field<'a>>,
}

#[derive(Clone, Copy)]
pub enum Shape {
    Named,
    Tuple,
    Unit,
}

impl Shape {
    /// The word that goes into the fingerprint.
    pub fn as_str(self) -> &'static str {
        match self {
            Shape::Named => "named",
            Shape::Tuple => "tuple",
            Shape::Unit => "unit",
        }
    }
}

pub struct Field<'a> {
    /// The name in the fingerprint: the identifier without `r#`, or the position.
    pub name: String,
    pub attrs: &'a [Attribute],
    pub ty: &'a Type,
}

/// The name used in fingerprints and `Message::NAME`: the identifier without `r#`.
pub fn unraw(ident: &Ident) -> String {
    let s = ident.to_string();
    s.strip_prefix("r#")
        .map_or_else(|| s.clone(), str::to_owned)
}

impl<'a> Body<'a> {
    pub fn from_syn(fields: &'a Fields) -> Self {
        let shape = match fields {
            Fields::Named(_) => Shape::Named,
            Fields::Unnamed(_) => Shape::Tuple,
            Fields::Unit => Shape::Unit,
        };
        let fields = fields
            .iter()
            .enumerate()
            .map(|(i, f)| Field {
                name: f.ident.as_ref().map_or_else(|| i.to_string(), unraw),
                attrs: &f.attrs,
                ty: &f.ty,
            })
            .collect();
        Body { shape, fields }
    }
}

impl<'a> Input<'a> {
    /// Builds the model of a struct or enum; other items are refused by the caller.
    pub fn from_struct(item: &'a syn::ItemStruct) -> Self {
        Input {
            ident: &item.ident,
            attrs: &item.attrs,
            generics: &item.generics,
            data: Data::Struct(Body::from_syn(&item.fields)),
        }
    }

    pub fn from_enum(item: &'a syn::ItemEnum) -> Self {
        Input {
            ident: &item.ident,
            attrs: &item.attrs,
            generics: &item.generics,
            data: Data::Enum {
                enum_token_span: item.enum_token.span,
                variants: item
                    .variants
                    .iter()
                    .map(|v| Variant {
                        original: v,
                        body: Body::from_syn(&v.fields),
                    })
                    .collect(),
            },
        }
    }

    /// Every field of the item, in order (all variants for an enum).
    pub fn all_fields(&self) -> Vec<&Field<'a>> {
        match &self.data {
            Data::Struct(body) => body.fields.iter().collect(),
            Data::Enum { variants, .. } => {
                variants.iter().flat_map(|v| v.body.fields.iter()).collect()
            }
        }
    }
}
