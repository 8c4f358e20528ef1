//! `repliq-codegen`: generates `#[repliq::message]` types from schema files under `schemas/`.
//!
//! This crate is being built (see the codegen issue); it exposes no API yet.
