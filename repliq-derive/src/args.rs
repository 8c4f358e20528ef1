//! The attribute's own arguments: `#[repliq::message(name = "..", crate = path)]`.

use proc_macro2::{Span, TokenStream};
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::{LitStr, Path};

/// Parsed arguments, each with the span of where it was given.
#[derive(Default)]
pub struct Args {
    pub name: Option<(String, Span)>,
    pub krate: Option<Path>,
}

/// Parses the arguments, pushing one error per problem and continuing where possible.
pub fn parse(tokens: TokenStream, errors: &mut Vec<syn::Error>) -> Args {
    let mut args = Args::default();
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("name") {
            let lit: LitStr = meta.value()?.parse()?;
            if args.name.is_some() {
                errors.push(duplicate(&meta, "name"));
            } else {
                args.name = Some((lit.value(), lit.span()));
            }
            Ok(())
        } else if meta.path.is_ident("crate") {
            let path: Path = meta.value()?.parse()?;
            if args.krate.is_some() {
                errors.push(duplicate(&meta, "crate"));
            } else {
                args.krate = Some(path);
            }
            Ok(())
        } else {
            let path = &meta.path;
            let shown = quote::quote!(#path).to_string().replace(' ', "");
            errors.push(meta.error(format_args!(
                "unknown argument `{shown}` of #[repliq::message]; expected `name = \"...\"` or `crate = path`"
            )));
            // Skip the argument's value so the arguments after it are still checked.
            if meta.input.peek(syn::Token![=]) {
                meta.value()?.parse::<syn::Expr>()?;
            } else if meta.input.peek(syn::token::Paren) {
                meta.input.parse::<proc_macro2::Group>()?;
            }
            Ok(())
        }
    });
    if let Err(e) = parser.parse2(tokens) {
        errors.push(e);
    }
    args
}

fn duplicate(meta: &ParseNestedMeta<'_>, what: &str) -> syn::Error {
    meta.error(format_args!(
        "duplicate argument `{what}` of #[repliq::message]"
    ))
}
