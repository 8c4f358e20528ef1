//! The connectors, one module (and cargo feature) each.

#[cfg(feature = "redis")]
pub(crate) mod redis;
