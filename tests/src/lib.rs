//! Shared helpers for repliq's cross-crate tests.
