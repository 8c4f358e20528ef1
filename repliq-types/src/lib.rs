//! repliq's type model, shared by the `repliq` library and `repliq-codegen`: one implementation
//! of message type descriptors ([`Type`]), their archived layout ([`Layout`]) and their
//! fingerprint ([`Hasher`], [`Type::fingerprint`]), so that a type generated from a schema file
//! and the same type written by hand hash alike by construction.
//!
//! Applications use these through `repliq::descriptor` and `repliq::fingerprint`, which re-export
//! them; the algorithm is documented there.
//!
//! # The fingerprint
//!
//! 64-bit FNV-1a over a stream of `str` and `u64` items; the stream of every type is listed in
//! the documentation of `repliq::fingerprint`.

#![forbid(unsafe_code)]

mod hasher;
mod model;

pub use hasher::Hasher;
pub use model::{
    Body, Field, Kind, Layout, List, MessageType, Ref, Shape, Type, Variant, align_up,
};
