//! The entry point (parse → check → expand) and the printing of the generated code.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Item, Path};

use crate::ast::{Body, Data, Input, unraw};
use crate::{args, check, fallback};

pub fn message(args: TokenStream, input: TokenStream) -> TokenStream {
    let mut errors = Vec::new();
    let args = args::parse(args, &mut errors);
    let item: Item = match syn::parse2(input.clone()) {
        Ok(item) => item,
        Err(e) => return fallback::emit(None, input, vec![e]),
    };
    let model = match &item {
        Item::Struct(s) => Some(Input::from_struct(s)),
        Item::Enum(e) => Some(Input::from_enum(e)),
        Item::Union(u) => {
            errors.push(syn::Error::new(
                u.union_token.span,
                "repliq messages cannot be unions: a union's active field is unknown, so it can \
                 be neither validated nor fingerprinted; use an enum",
            ));
            None
        }
        other => {
            errors.push(syn::Error::new(
                item_keyword_span(other),
                "#[repliq::message] applies to structs and enums only",
            ));
            None
        }
    };
    if let Some(model) = &model {
        check::input(&args, model, &mut errors);
    }
    match model {
        Some(model) if errors.is_empty() => expand(&args, &model, &item),
        _ => fallback::emit(Some(item.clone()), input, errors),
    }
}

/// The span of the keyword that names the kind of item (`fn`, `trait`, `impl`, ...).
fn item_keyword_span(item: &Item) -> proc_macro2::Span {
    match item {
        Item::Fn(f) => f.sig.fn_token.span,
        Item::Trait(t) => t.trait_token.span,
        Item::Impl(i) => i.impl_token.span,
        Item::Mod(m) => m.mod_token.span,
        Item::Const(c) => c.const_token.span,
        Item::Static(s) => s.static_token.span,
        Item::Type(t) => t.type_token.span,
        Item::Use(u) => u.use_token.span,
        other => other.span(),
    }
}

fn expand(args: &args::Args, input: &Input<'_>, item: &Item) -> TokenStream {
    let krate: Path = args
        .krate
        .clone()
        .unwrap_or_else(|| syn::parse_quote!(::repliq));
    let serde_path = format!("{}::__private::serde", quote!(#krate)).replace(' ', "");
    let ident = input.ident;
    let name = args
        .name
        .as_ref()
        .map_or_else(|| unraw(ident), |(n, _)| n.clone());

    let hasher = quote!(#krate::__private::Hasher::new().str("repliq.message.v1"));
    let fingerprint = match &input.data {
        Data::Struct(body) => {
            let fields = body_items(&krate, body);
            quote!(#hasher.str("struct").str(#name) #fields .finish())
        }
        Data::Enum { variants, .. } => {
            let count = variants.len() as u64;
            let variants = variants.iter().map(|v| {
                let vname = unraw(&v.original.ident);
                let fields = body_items(&krate, &v.body);
                quote!(.str(#vname) #fields)
            });
            quote!(#hasher.str("enum").str(#name).u64(#count) #(#variants)* .finish())
        }
    };

    let d = quote!(#krate::descriptor);
    let cow = quote!(#krate::__private::Cow::Borrowed);
    let kind = match &input.data {
        Data::Struct(body) => {
            let body = body_descriptor(&krate, body);
            quote!(#d::Kind::Struct(#body))
        }
        Data::Enum { variants, .. } => {
            let variants = variants.iter().map(|v| {
                let vname = unraw(&v.original.ident);
                let body = body_descriptor(&krate, &v.body);
                quote!(#d::Variant { name: #cow(#vname), body: #body })
            });
            quote!(#d::Kind::Enum(#d::List::Static(&[#(#variants),*])))
        }
    };
    let descriptor = quote! {
        &#d::Type::Message(#d::Ref::Static(&#d::MessageType {
            name: #cow(#name),
            kind: #kind,
        }))
    };

    let field_check = field_check(&krate, input);

    quote! {
        #field_check

        #[derive(
            #krate::__private::rkyv::Archive,
            #krate::__private::rkyv::Serialize,
            #krate::__private::rkyv::Deserialize,
            #krate::__private::serde::Serialize,
            #krate::__private::serde::Deserialize
        )]
        #[rkyv(crate = #krate::__private::rkyv)]
        #[serde(crate = #serde_path)]
        #item

        #[doc(hidden)]
        const _: () = {
            #[automatically_derived]
            impl #krate::Fingerprint for #ident {
                const FINGERPRINT: u64 = #fingerprint;
                const DESCRIPTOR: &'static #krate::descriptor::Type = #descriptor;
            }
            #[automatically_derived]
            impl #krate::Message for #ident {
                const NAME: &'static str = #name;
            }
        };
    }
}

/// An item emitted *before* the derives: a unit struct whose where-clause requires
/// `Fingerprint` of every field type, each bound spanned on the field's type. rustc checks items'
/// well-formedness in the order they appear, so a field type that cannot be in a message is
/// reported here first ("`Side` cannot be a field of a repliq message", with the field's line
/// and the list of allowed types), before the trait-bound errors of rkyv's and serde's derives,
/// which come from the same fault. Types that mention `Self` are left to the fingerprint (in
/// this struct `Self` would name the struct).
fn field_check(krate: &Path, input: &Input<'_>) -> TokenStream {
    let bodies: Vec<&Body<'_>> = match &input.data {
        Data::Struct(body) => vec![body],
        Data::Enum { variants, .. } => variants.iter().map(|v| &v.body).collect(),
    };
    let bounds: Vec<TokenStream> = bodies
        .iter()
        .flat_map(|b| b.fields.iter())
        .filter(|f| !mentions_self(f.ty.to_token_stream()))
        .map(|f| {
            let ty = f.ty;
            // Every token of the bound on the field's type (the crate path too), so that rustc
            // points at the field and not at the attribute.
            let span = ty.span();
            let colon = quote_spanned!(span=> :);
            let bound = respan(quote!(#krate::Fingerprint), span);
            quote!(#ty #colon #bound)
        })
        .collect();
    if bounds.is_empty() {
        return TokenStream::new();
    }
    quote! {
        #[doc(hidden)]
        const _: () = {
            #[allow(dead_code)]
            struct __RepliqFieldsMustBeMessageFields where #(#bounds),*;
        };
    }
}

fn respan(tokens: TokenStream, span: proc_macro2::Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut t| {
            if let proc_macro2::TokenTree::Group(g) = &t {
                let mut group = proc_macro2::Group::new(g.delimiter(), respan(g.stream(), span));
                group.set_span(span);
                t = proc_macro2::TokenTree::Group(group);
            } else {
                t.set_span(span);
            }
            t
        })
        .collect()
}

fn mentions_self(tokens: TokenStream) -> bool {
    tokens.into_iter().any(|t| match t {
        proc_macro2::TokenTree::Ident(i) => i == "Self",
        proc_macro2::TokenTree::Group(g) => mentions_self(g.stream()),
        _ => false,
    })
}

/// `str(shape) u64(count)` then `str(field) u64(fp(type))` for each field. The type's part is
/// spanned on the user's type, so a type that cannot be a field is reported right there.
fn body_items(krate: &Path, body: &Body<'_>) -> TokenStream {
    let shape = body.shape.as_str();
    let count = body.fields.len() as u64;
    let fields = body.fields.iter().map(|f| {
        let fname = &f.name;
        let ty = f.ty;
        let fp = quote_spanned!(ty.span()=> <#ty as #krate::Fingerprint>::FINGERPRINT);
        quote!(.str(#fname).u64(#fp))
    });
    quote!(.str(#shape).u64(#count) #(#fields)*)
}

/// The descriptor of a struct's or variant's fields; each field type's part is spanned on the
/// user's type, like the fingerprint's.
fn body_descriptor(krate: &Path, body: &Body<'_>) -> TokenStream {
    let d = quote!(#krate::descriptor);
    let shape = match body.shape {
        crate::ast::Shape::Named => quote!(#d::Shape::Named),
        crate::ast::Shape::Tuple => quote!(#d::Shape::Tuple),
        crate::ast::Shape::Unit => quote!(#d::Shape::Unit),
    };
    let fields = body.fields.iter().map(|f| {
        let fname = &f.name;
        let ty = f.ty;
        let desc = quote_spanned!(ty.span()=> <#ty as #krate::Fingerprint>::DESCRIPTOR);
        quote!(#d::Field {
            name: #krate::__private::Cow::Borrowed(#fname),
            ty: #d::Ref::Static(#desc),
        })
    });
    quote!(#d::Body { shape: #shape, fields: #d::List::Static(&[#(#fields),*]) })
}
