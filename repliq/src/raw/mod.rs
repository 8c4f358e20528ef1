//! The operating system and the bytes below the journal: mappings, futexes, the SIGBUS guard,
//! clocks, crc32c, the rkyv byte path. Most of repliq's `unsafe` code is here; the rest is in
//! the journal, which borrows committed bytes of a mapping through this module's `unsafe fn`s
//! (`docs/ARCHITECTURE.md`, "Where `unsafe` lives", lists every place and its argument).
//!
//! Every `unsafe` block carries a `// SAFETY:` comment listing the invariants it relies on, and
//! every `unsafe fn` a `# Safety` section (both enforced by clippy). The crate is compiled with
//! `#![deny(unsafe_code)]`; each item that needs `unsafe` says so with `#[allow(unsafe_code)]`.

pub(crate) mod background;
pub(crate) mod clock;
mod codec;
pub(crate) mod crc;
pub(crate) mod futex;
pub(crate) mod holes;
mod mmap;
mod sigbus;

pub use codec::access_unchecked;
pub(crate) use mmap::{MappedFile, Prefault, on_tmpfs, preallocate};
