//! `repliq-codegen`: Rust message types from schema files.
//!
//! Teams that share message types across services define them once in schema files (`.rq`) and
//! generate the Rust types, each marked [`#[repliq::message]`](https://docs.rs/repliq): the macro
//! stays the single definition of a message, so a generated type and the same type written by
//! hand have the same `NAME` and `FINGERPRINT` and can share a queue.
//!
//! ```text
//! //! Market data.
//! package market;
//!
//! /// Which side of the book.
//! enum Side { Buy, Sell }
//!
//! /// A trade print.
//! message Trade {
//!     symbol: string,
//!     side: Side,
//!     price: f64,
//!     size: u32,
//!     at: timestamp,
//! }
//! ```
//!
//! The language (packages, imports, messages, enums, built-in types) is described in
//! `docs/SCHEMA.md`.
//!
//! # In `build.rs`
//!
//! ```no_run
//! // build.rs (with `repliq-codegen` under [build-dependencies])
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     repliq_codegen::configure()
//!         .include_file("schemas.rs")
//!         .compile(&["../schemas/market.rq"])?;
//!     Ok(())
//! }
//! ```
//!
//! and in the crate: `include!(concat!(env!("OUT_DIR"), "/schemas.rs"));`, then use
//! `market::Trade`. [`Builder::compile`] writes one `<package>.rs` per package into `OUT_DIR`
//! and prints `cargo:rerun-if-changed` for every schema file and import.
//!
//! # Without files
//!
//! [`generate`] is pure: it takes `(path, text)` pairs and returns the generated sources.
//!
//! ```
//! let files = repliq_codegen::generate(&[(
//!     "market.rq",
//!     "package market; message Tick { price: f64 }",
//! )])?;
//! assert_eq!(files[0].name, "market.rs");
//! assert!(files[0].contents.contains(r#"#[::repliq::message(name = "market.Tick")]"#));
//! # Ok::<(), repliq_codegen::Error>(())
//! ```
//!
//! # Errors
//!
//! Every error of a run is reported at once, like a compiler does ([`Diagnostics`]):
//!
//! ```
//! let err = repliq_codegen::generate(&[("m.rq", "package m;\nmessage A { x: Sid }")])
//!     .unwrap_err();
//! assert!(err.to_string().contains("m.rq:2:16"));
//! ```
//!
//! # Compatibility
//!
//! [`compat`] compares two versions of a schema and names each change that alters a type's
//! fingerprint (and so makes existing queues refuse the new type).
#![doc(test(attr(deny(warnings))))]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod ast;
mod builder;
mod check;
mod compat;
mod diag;
mod expand;
mod fingerprint;
mod load;
mod model;
mod parse;

pub use builder::{Builder, Error, GeneratedFile, TypeInfo, configure, generate};
pub use compat::{Change, CompatReport, compat, compat_sources};
pub use diag::Diagnostics;
