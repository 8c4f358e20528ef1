//! Schema text → [`ast::File`].
//!
//! proc-macro2 tokenizes the text (comments dropped, `///` and `//!` turned into doc attributes,
//! every token with a byte range) and syn parses the tokens. The parser recovers at item and field
//! boundaries, so one run reports every syntax error rather than the first.

use std::str::FromStr;

use proc_macro2::{Delimiter, Span, TokenStream, TokenTree};
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::{Attribute, Ident, LitInt, LitStr, Token, bracketed, parenthesized};

use crate::ast::{self, Field, Fields, Item, ItemKind, Loc, Name, TypeExpr, Variant};
use crate::diag::{Code, Sink};

mod kw {
    syn::custom_keyword!(package);
    syn::custom_keyword!(import);
    syn::custom_keyword!(message);
}

/// Words that start a top-level item; recovery stops in front of them.
const ITEM_WORDS: &[&str] = &["package", "import", "message", "enum"];

/// Errors found while parsing one file, each with its diagnostic code.
struct Errors(Vec<(Code, syn::Error)>);

impl Errors {
    fn syntax(&mut self, e: syn::Error) {
        self.0.push((Code::Syntax, e));
    }

    fn unsupported(&mut self, span: Span, message: impl std::fmt::Display) {
        self.0
            .push((Code::Unsupported, syn::Error::new(span, message)));
    }
}

/// Parses one file; errors go to `sink`, located in `file` (whose text is `src`).
pub(crate) fn parse_file(file: usize, src: &str, sink: &mut Sink) -> ast::File {
    let tokens = match TokenStream::from_str(src) {
        Ok(tokens) => tokens,
        Err(e) => {
            let loc = locate(file, src, e.span(), &e.to_string());
            let (message, label) = match src[loc.range.start..].chars().next() {
                Some('"') => ("unterminated string literal", "this string is never closed"),
                Some('{' | '(' | '[') => ("unclosed delimiter", "this delimiter is never closed"),
                Some('}' | ')' | ']') => ("unexpected closing delimiter", "nothing to close here"),
                Some('\'') => (
                    "character literals are not part of the schema language",
                    "here",
                ),
                _ => ("unexpected character", "not part of the schema language"),
            };
            sink.error(Code::Syntax, message, &loc, label);
            return ast::File {
                unreadable: true,
                ..ast::File::default()
            };
        }
    };
    let mut errors = Errors(Vec::new());
    let parsed =
        (|input: ParseStream<'_>| Ok(parse_items(file, input, &mut errors))).parse2(tokens);
    let out = match parsed {
        Ok(out) => out,
        Err(e) => {
            errors.syntax(e);
            ast::File::default()
        }
    };
    for (code, error) in errors.0 {
        for e in error {
            let message = e.to_string();
            let loc = locate(file, src, e.span(), &message);
            let label = match code {
                Code::Unsupported => "not supported in schemas",
                _ => "here",
            };
            sink.error(code, message, &loc, label);
        }
    }
    out
}

/// The location of a span. syn reports "unexpected end of input" at the call site (no range):
/// that is the end of the file.
fn locate(file: usize, src: &str, span: Span, message: &str) -> Loc {
    let range = span.byte_range();
    if range == (0..0) && message.contains("end of input") {
        return Loc {
            file,
            range: src.len()..src.len(),
        };
    }
    Loc { file, range }
}

fn loc(file: usize, span: Span) -> Loc {
    Loc {
        file,
        range: span.byte_range(),
    }
}

fn join(file: usize, first: Span, last: Span) -> Loc {
    Loc {
        file,
        range: first.byte_range().start..last.byte_range().end,
    }
}

fn name(file: usize, ident: &Ident) -> Name {
    Name {
        text: ident.unraw().to_string(),
        loc: loc(file, ident.span()),
    }
}

fn parse_items(file: usize, input: ParseStream<'_>, errors: &mut Errors) -> ast::File {
    let mut out = ast::File::default();
    match input.call(Attribute::parse_inner) {
        Ok(attrs) => out.docs = docs(&attrs, errors),
        Err(e) => errors.syntax(e),
    }
    while !input.is_empty() {
        if let Err(e) = parse_item(file, input, &mut out, errors) {
            errors.syntax(e);
            recover_item(input);
        }
    }
    out
}

/// Skips to the start of the next item: past a `;` or a `{ ... }` group, or up to an item keyword.
fn recover_item(input: ParseStream<'_>) {
    let _ = input.step(|cursor| {
        let mut rest = *cursor;
        let mut first = true;
        while let Some((tt, next)) = rest.token_tree() {
            let starts_item = match &tt {
                TokenTree::Ident(i) => ITEM_WORDS.iter().any(|w| i == w),
                TokenTree::Punct(p) => p.as_char() == '#',
                _ => false,
            };
            if starts_item && !first {
                break;
            }
            first = false;
            rest = next;
            match &tt {
                TokenTree::Punct(p) if p.as_char() == ';' => break,
                TokenTree::Group(g) if g.delimiter() == Delimiter::Brace => break,
                _ => {}
            }
        }
        Ok(((), rest))
    });
}

/// Skips past the next `,` at this nesting level (or to the end of the group).
fn recover_comma(input: ParseStream<'_>) {
    let _ = input.step(|cursor| {
        let mut rest = *cursor;
        while let Some((tt, next)) = rest.token_tree() {
            rest = next;
            if matches!(&tt, TokenTree::Punct(p) if p.as_char() == ',') {
                break;
            }
        }
        Ok(((), rest))
    });
}

/// The text of `///` comments; other attributes are reported as unsupported.
fn docs(attrs: &[Attribute], errors: &mut Errors) -> Vec<String> {
    let mut out = Vec::new();
    for attr in attrs {
        if let syn::Meta::NameValue(nv) = &attr.meta
            && nv.path.is_ident("doc")
            && let syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) = &nv.value
        {
            out.push(s.value());
            continue;
        }
        errors.unsupported(
            attr.pound_token.span,
            "attributes are not supported in schemas (only `///` and `//!` doc comments)",
        );
    }
    out
}

fn parse_item(
    file: usize,
    input: ParseStream<'_>,
    out: &mut ast::File,
    errors: &mut Errors,
) -> syn::Result<()> {
    let attrs = input.call(Attribute::parse_outer)?;
    let docs = docs(&attrs, errors);
    let lookahead = input.lookahead1();
    if lookahead.peek(kw::package) {
        let keyword: kw::package = input.parse()?;
        let segments = parse_dotted(file, input)?;
        let semi: Token![;] = input.parse()?;
        out.packages.push(ast::Package {
            segments,
            loc: join(file, keyword.span, semi.span),
        });
        out.docs.extend(docs);
    } else if lookahead.peek(kw::import) {
        let keyword: kw::import = input.parse()?;
        let path: LitStr = input.parse()?;
        input.parse::<Token![;]>()?;
        out.imports.push(ast::Import {
            path: path.value(),
            loc: join(file, keyword.span, path.span()),
        });
    } else if lookahead.peek(kw::message) {
        input.parse::<kw::message>()?;
        let ident = Ident::parse_any(input)?;
        generics(input, errors)?;
        let fields = if input.peek(Token![;]) {
            input.parse::<Token![;]>()?;
            Fields::Unit
        } else if input.peek(syn::token::Paren) {
            let fields = parse_tuple_fields(file, input, errors)?;
            input.parse::<Token![;]>()?;
            fields
        } else if input.peek(syn::token::Brace) {
            parse_named_fields(file, input, errors)?
        } else {
            return Err(input.error("expected `{`, `(` or `;` after the message name"));
        };
        out.items.push(Item {
            docs,
            name: name(file, &ident),
            kind: ItemKind::Message(fields),
        });
    } else if lookahead.peek(Token![enum]) {
        input.parse::<Token![enum]>()?;
        let ident = Ident::parse_any(input)?;
        generics(input, errors)?;
        let variants = parse_variants(file, input, errors)?;
        out.items.push(Item {
            docs,
            name: name(file, &ident),
            kind: ItemKind::Enum(variants),
        });
    } else if input.peek(Ident::peek_any) {
        let ident = Ident::parse_any(input)?;
        let hint = match ident.to_string().as_str() {
            "struct" => "; write `message` for a struct",
            "union" => "; write `enum` for a sum type",
            "type" | "use" | "mod" | "fn" | "impl" | "trait" | "const" | "static" | "service" => "",
            _ => return Err(lookahead.error()),
        };
        errors.unsupported(
            ident.span(),
            format!("`{ident}` items are not supported in schemas{hint}"),
        );
        recover_item(input);
    } else {
        return Err(lookahead.error());
    }
    Ok(())
}

/// Rejects `<...>` after a type name: schema types are not generic.
fn generics(input: ParseStream<'_>, errors: &mut Errors) -> syn::Result<()> {
    if input.peek(Token![<]) {
        let generics: syn::Generics = input.parse()?;
        let span = generics.lt_token.map_or_else(Span::call_site, |lt| lt.span);
        errors.unsupported(span, "generic messages and enums are not supported");
    }
    Ok(())
}

/// `a.b.c`
fn parse_dotted(file: usize, input: ParseStream<'_>) -> syn::Result<Vec<Name>> {
    let mut segments = vec![name(file, &Ident::parse_any(input)?)];
    while input.peek(Token![.]) {
        input.parse::<Token![.]>()?;
        segments.push(name(file, &Ident::parse_any(input)?));
    }
    if input.peek(Token![::]) {
        return Err(input.error("separate the parts of a name with `.`, not `::`"));
    }
    Ok(segments)
}

/// A `,` between list elements, or the end of the group.
fn separator(input: ParseStream<'_>, expected: &str) -> syn::Result<()> {
    if input.is_empty() {
        return Ok(());
    }
    if input.peek(Token![,]) {
        input.parse::<Token![,]>()?;
        return Ok(());
    }
    Err(input.error(format!("expected {expected}")))
}

fn parse_named_fields(
    file: usize,
    input: ParseStream<'_>,
    errors: &mut Errors,
) -> syn::Result<Fields> {
    let content;
    syn::braced!(content in input);
    let mut fields = Vec::new();
    while !content.is_empty() {
        match parse_named_field(file, &content, errors) {
            Ok(field) => fields.push(field),
            Err(e) => {
                errors.syntax(e);
                recover_comma(&content);
            }
        }
    }
    Ok(Fields::Named(fields))
}

fn parse_named_field(
    file: usize,
    input: ParseStream<'_>,
    errors: &mut Errors,
) -> syn::Result<Field> {
    let attrs = input.call(Attribute::parse_outer)?;
    let docs = docs(&attrs, errors);
    if input.peek(Token![pub]) {
        let vis: Token![pub] = input.parse()?;
        errors.unsupported(
            vis.span,
            "fields are always `pub` in generated code; remove `pub`",
        );
    }
    let ident = Ident::parse_any(input)?;
    input.parse::<Token![:]>()?;
    let ty = parse_type(file, input, errors)?;
    separator(input, "`,` or `}` after the field")?;
    Ok(Field {
        docs,
        name: name(file, &ident),
        ty,
    })
}

fn parse_tuple_fields(
    file: usize,
    input: ParseStream<'_>,
    errors: &mut Errors,
) -> syn::Result<Fields> {
    let content;
    parenthesized!(content in input);
    let mut fields = Vec::new();
    while !content.is_empty() {
        let result = (|| {
            let attrs = content.call(Attribute::parse_outer)?;
            let docs = docs(&attrs, errors);
            let ty = parse_type(file, &content, errors)?;
            separator(&content, "`,` or `)` after the type")?;
            Ok::<_, syn::Error>((docs, ty))
        })();
        match result {
            Ok((docs, ty)) => fields.push(Field {
                docs,
                name: Name {
                    text: fields.len().to_string(),
                    loc: ty.loc().clone(),
                },
                ty,
            }),
            Err(e) => {
                errors.syntax(e);
                recover_comma(&content);
            }
        }
    }
    Ok(Fields::Tuple(fields))
}

fn parse_variants(
    file: usize,
    input: ParseStream<'_>,
    errors: &mut Errors,
) -> syn::Result<Vec<Variant>> {
    let content;
    syn::braced!(content in input);
    let mut variants = Vec::new();
    while !content.is_empty() {
        match parse_variant(file, &content, errors) {
            Ok(variant) => variants.push(variant),
            Err(e) => {
                errors.syntax(e);
                recover_comma(&content);
            }
        }
    }
    Ok(variants)
}

fn parse_variant(file: usize, input: ParseStream<'_>, errors: &mut Errors) -> syn::Result<Variant> {
    let attrs = input.call(Attribute::parse_outer)?;
    let docs = docs(&attrs, errors);
    let ident = Ident::parse_any(input)?;
    let fields = if input.peek(syn::token::Paren) {
        parse_tuple_fields(file, input, errors)?
    } else if input.peek(syn::token::Brace) {
        parse_named_fields(file, input, errors)?
    } else {
        Fields::Unit
    };
    if input.peek(Token![=]) {
        let eq: Token![=] = input.parse()?;
        let _: syn::Expr = input.parse()?;
        errors.unsupported(
            eq.span,
            "explicit discriminants are not supported: variants are numbered in order",
        );
    }
    separator(input, "`,` or `}` after the variant")?;
    Ok(Variant {
        docs,
        name: name(file, &ident),
        fields,
    })
}

fn parse_type(file: usize, input: ParseStream<'_>, errors: &mut Errors) -> syn::Result<TypeExpr> {
    if input.peek(syn::token::Bracket) {
        let content;
        let brackets = bracketed!(content in input);
        let elem = parse_type(file, &content, errors)?;
        content.parse::<Token![;]>()?;
        let len: LitInt = content.parse()?;
        if !content.is_empty() {
            return Err(content.error("expected `]` after the array length"));
        }
        let span = brackets.span.join();
        let len = len.base10_parse::<u64>()?;
        return Ok(TypeExpr::Array {
            elem: Box::new(elem),
            len,
            loc: loc(file, span),
        });
    }
    if input.peek(syn::token::Paren) {
        let content;
        let parens = parenthesized!(content in input);
        let _ = content.parse::<TokenStream>();
        errors.unsupported(
            parens.span.join(),
            "tuple types are not supported in schemas; define a message",
        );
        return Ok(TypeExpr::Path {
            segments: Vec::new(),
            args: Vec::new(),
            loc: loc(file, parens.span.join()),
        });
    }
    let segments = parse_dotted(file, input)?;
    let mut args = Vec::new();
    let mut end = segments.last().map(|s| s.loc.range.end).unwrap_or_default();
    if input.peek(Token![<]) {
        input.parse::<Token![<]>()?;
        loop {
            if input.peek(Token![>]) {
                break;
            }
            args.push(parse_type(file, input, errors)?);
            if input.peek(Token![>]) {
                break;
            }
            if !input.peek(Token![,]) {
                return Err(input.error("expected `,` or `>` after the type argument"));
            }
            input.parse::<Token![,]>()?;
        }
        let gt: Token![>] = input.parse()?;
        end = gt.span.byte_range().end;
    }
    let start = segments[0].loc.range.start;
    Ok(TypeExpr::Path {
        segments,
        args,
        loc: Loc {
            file,
            range: start..end,
        },
    })
}
