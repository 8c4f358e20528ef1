//! The `#[repliq::message]` attribute.
//!
//! Use it through the `repliq` crate (`#[repliq::message]`); the code it generates names paths of
//! that crate. The macro works in three stages, like serde_derive and thiserror: `args` and
//! `ast` parse the attribute and the item into a model, `check` validates the model and
//! collects every problem with a span on the user's tokens, and `expand` prints the output.
//! When anything is wrong, `fallback` still emits the user's item (so later code does not report
//! a cascade of errors) next to the `compile_error!`s.

mod args;
mod ast;
mod check;
mod expand;
mod fallback;

use proc_macro::TokenStream;

/// Marks a struct or enum as a repliq message. Documented on `repliq::message`.
#[proc_macro_attribute]
pub fn message(args: TokenStream, input: TokenStream) -> TokenStream {
    expand::message(args.into(), input.into()).into()
}
