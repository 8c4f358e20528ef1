//! What the macro emits when the input has errors: the user's item, cleaned of the helper
//! attributes that only the derives would have understood, next to the errors. The item stays
//! defined, so code that uses it does not report a cascade of "cannot find type" errors.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::{Attribute, Item};

pub fn emit(item: Option<Item>, original: TokenStream, errors: Vec<syn::Error>) -> TokenStream {
    let mut out = match item {
        Some(mut item) => {
            strip_helpers(&mut item);
            item.into_token_stream()
        }
        None => original,
    };
    for e in errors {
        out.extend(e.into_compile_error());
    }
    out
}

fn strip(attrs: &mut Vec<Attribute>) {
    attrs.retain(|a| !(a.path().is_ident("rkyv") || a.path().is_ident("serde")));
}

fn strip_helpers(item: &mut Item) {
    match item {
        Item::Struct(s) => {
            strip(&mut s.attrs);
            s.fields.iter_mut().for_each(|f| strip(&mut f.attrs));
        }
        Item::Enum(e) => {
            strip(&mut e.attrs);
            for v in &mut e.variants {
                strip(&mut v.attrs);
                v.fields.iter_mut().for_each(|f| strip(&mut f.attrs));
            }
        }
        Item::Union(u) => {
            strip(&mut u.attrs);
            u.fields.named.iter_mut().for_each(|f| strip(&mut f.attrs));
        }
        _ => {}
    }
}
