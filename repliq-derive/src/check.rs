//! Checks of the model. Each problem becomes a `syn::Error` spanned on the user's tokens; all of
//! them are collected, so one compile run reports every problem.

use syn::spanned::Spanned;
use syn::{Attribute, GenericArgument, PathArguments, ReturnType, Token, Type};

use crate::args::Args;
use crate::ast::{Data, Input};

/// Container-level `#[rkyv(..)]` arguments that do not change the archived layout.
const ALLOWED_RKYV_ARGS: &[&str] = &["derive", "compare", "attr", "archived", "resolver"];

pub fn input(args: &Args, input: &Input<'_>, errors: &mut Vec<syn::Error>) {
    if let Some((name, span)) = &args.name {
        check_name(name, *span, errors);
    }
    if !input.generics.params.is_empty() || input.generics.where_clause.is_some() {
        errors.push(syn::Error::new_spanned(
            input.generics,
            "repliq messages cannot have generic parameters: a queue stores one concrete type, \
             identified by its fingerprint",
        ));
    }
    for attr in input.attrs {
        container_rkyv_attr(attr, errors);
    }
    if let Data::Enum {
        enum_token_span,
        variants,
    } = &input.data
    {
        if variants.is_empty() {
            errors.push(syn::Error::new(
                *enum_token_span,
                "a message enum needs at least one variant: an enum without variants has no value \
                 to send",
            ));
        }
        for v in variants {
            if let Some((eq, expr)) = &v.original.discriminant {
                errors.push(syn::Error::new_spanned(
                    quote::quote!(#eq #expr),
                    "explicit discriminants are not supported in messages: the archived tag is \
                     the variant's position",
                ));
            }
            no_rkyv_attr(&v.original.attrs, "variants", errors);
        }
    }
    for field in input.all_fields() {
        no_rkyv_attr(field.attrs, "fields", errors);
        field_type(field.ty, errors);
    }
}

fn check_name(name: &str, span: proc_macro2::Span, errors: &mut Vec<syn::Error>) {
    if name.is_empty() {
        errors.push(syn::Error::new(
            span,
            "the message `name` must not be empty",
        ));
    } else if let Some(c) = name.chars().find(|c| c.is_whitespace() || c.is_control()) {
        errors.push(syn::Error::new(
            span,
            format_args!(
                "the message `name` must not contain whitespace or control characters (found {c:?})"
            ),
        ));
    }
}

fn container_rkyv_attr(attr: &Attribute, errors: &mut Vec<syn::Error>) {
    if !attr.path().is_ident("rkyv") {
        return;
    }
    let result = attr.parse_nested_meta(|meta| {
        let allowed = meta
            .path
            .get_ident()
            .is_some_and(|i| ALLOWED_RKYV_ARGS.iter().any(|a| i == a));
        if !allowed {
            let path = &meta.path;
            errors.push(syn::Error::new_spanned(
                path,
                format_args!(
                    "`#[rkyv({})]` is not allowed on a repliq message: it would change how the \
                     message is archived behind its fingerprint; allowed: {}",
                    quote::quote!(#path).to_string().replace(' ', ""),
                    ALLOWED_RKYV_ARGS.join(", "),
                ),
            ));
        }
        // Skip the argument's value: rkyv's derive checks it.
        if meta.input.peek(Token![=]) {
            meta.value()?.parse::<syn::Expr>()?;
        } else if meta.input.peek(syn::token::Paren) {
            meta.input.parse::<proc_macro2::Group>()?;
        }
        Ok(())
    });
    if let Err(e) = result {
        errors.push(e);
    }
}

fn no_rkyv_attr(attrs: &[Attribute], what: &str, errors: &mut Vec<syn::Error>) {
    for attr in attrs.iter().filter(|a| a.path().is_ident("rkyv")) {
        errors.push(syn::Error::new_spanned(
            attr,
            format_args!(
                "`#[rkyv(..)]` is not allowed on the {what} of a repliq message: it would change \
                 the archived layout without changing the message's fingerprint"
            ),
        ));
    }
}

/// Refuses field types that can never be archived, spanned on the offending part of the type.
/// Types that are well-formed but not archivable (a struct without `#[repliq::message]`) are
/// caught by the type checker instead, through the `Fingerprint` bound spanned on the field type.
fn field_type(ty: &Type, errors: &mut Vec<syn::Error>) {
    let refuse = |what: &str, errors: &mut Vec<syn::Error>| {
        errors.push(syn::Error::new(
            ty.span(),
            format_args!("{what} cannot be stored in a repliq message"),
        ));
    };
    match ty {
        Type::Reference(_) => refuse("a reference is only valid inside one process and", errors),
        Type::Ptr(_) => refuse("a raw pointer is only valid inside one process and", errors),
        Type::BareFn(_) => refuse(
            "a function pointer is only valid inside one process and",
            errors,
        ),
        Type::TraitObject(_) => refuse("a trait object has no fixed layout and", errors),
        Type::ImplTrait(_) => refuse("`impl Trait` has no fixed layout and", errors),
        Type::Never(_) => refuse("the never type `!` has no values and", errors),
        Type::Infer(_) => refuse("a field type must be written out: `_`", errors),
        Type::Macro(_) => refuse(
            "a type given by a macro cannot be fingerprinted by #[repliq::message] and",
            errors,
        ),
        Type::Slice(_) => refuse(
            "an unsized slice `[T]` has no fixed size (use `Vec<T>` or `[T; N]`) and",
            errors,
        ),
        Type::Array(a) => field_type(&a.elem, errors),
        Type::Group(g) => field_type(&g.elem, errors),
        Type::Paren(p) => field_type(&p.elem, errors),
        Type::Tuple(t) => t.elems.iter().for_each(|e| field_type(e, errors)),
        Type::Path(p) => {
            if let Some(q) = &p.qself {
                field_type(&q.ty, errors);
            }
            for seg in &p.path.segments {
                match &seg.arguments {
                    PathArguments::AngleBracketed(a) => {
                        for arg in &a.args {
                            if let GenericArgument::Type(t) = arg {
                                field_type(t, errors);
                            }
                        }
                    }
                    PathArguments::Parenthesized(p) => {
                        p.inputs.iter().for_each(|t| field_type(t, errors));
                        if let ReturnType::Type(_, t) = &p.output {
                            field_type(t, errors);
                        }
                    }
                    PathArguments::None => {}
                }
            }
        }
        _ => refuse("this kind of type", errors),
    }
}
