//! The only module of repliq that contains `unsafe` code.
//!
//! Every `unsafe` block here carries a `// SAFETY:` comment listing the invariants it relies on,
//! and every `unsafe fn` a `# Safety` section. Code outside this module is compiled with
//! `#![deny(unsafe_code)]`.

pub(crate) mod background;
pub(crate) mod clock;
mod codec;
pub(crate) mod crc;
pub(crate) mod futex;
mod mmap;
mod sigbus;

pub use codec::access_unchecked;
pub(crate) use mmap::{MappedFile, Prefault, on_tmpfs, preallocate};
