//! Structural fingerprints of message types.
//!
//! A fingerprint is a 64-bit hash of a type's *structure*: the same definition gives the same
//! value in every build, on every machine and with every compiler version (no `TypeId`, no
//! addresses). A queue records the fingerprint of its message type, and opening it with a type
//! whose fingerprint differs is refused.
//!
//! # The algorithm (version 1)
//!
//! The hash is 64-bit FNV-1a (offset basis `0xcbf29ce484222325`, prime `0x100000001b3`) over a
//! byte stream made of two kinds of items:
//!
//! * `str(s)`: the length of `s` in bytes as a little-endian `u64`, then its UTF-8 bytes;
//! * `u64(x)`: `x` as 8 little-endian bytes.
//!
//! Leaf types hash their name alone, `fnv(str(name))`, with these names: `bool`, `char`, `u8`,
//! `u16`, `u32`, `u64`, `u128`, `i8`, `i16`, `i32`, `i64`, `i128`, `f32`, `f64`, `usize`,
//! `isize`, `unit` (for `()`), `string` (for `String`), `duration` (for
//! `std::time::Duration`).
//!
//! Containers hash a tag and the fingerprints of their parameters:
//!
//! | type | stream |
//! |---|---|
//! | `Vec<T>` | `str("vec") u64(fp(T))` |
//! | `Option<T>` | `str("option") u64(fp(T))` |
//! | `Box<T>` | `str("box") u64(fp(T))` |
//! | `[T; N]` | `str("array") u64(N) u64(fp(T))` |
//! | `(A, B, ..)` | `str("tuple") u64(arity) u64(fp(A)) u64(fp(B)) ..` |
//! | `HashMap<K, V>` | `str("hash_map") u64(fp(K)) u64(fp(V))` |
//! | `BTreeMap<K, V>` | `str("btree_map") u64(fp(K)) u64(fp(V))` |
//! | `HashSet<T>` | `str("hash_set") u64(fp(T))` |
//! | `BTreeSet<T>` | `str("btree_set") u64(fp(T))` |
//!
//! A message struct hashes
//! `str("repliq.message.v1") str("struct") str(NAME) str(shape) u64(field count)` and then, for
//! each field in declaration order, `str(field name) u64(fp(field type))`. `shape` is `named`,
//! `tuple` or `unit`; tuple fields are named `0`, `1`, …; raw identifiers lose their `r#`.
//!
//! A message enum hashes `str("repliq.message.v1") str("enum") str(NAME) u64(variant count)`
//! and then, for each variant in order, `str(variant name) str(shape) u64(field count)`
//! followed by its fields as for a struct.
//!
//! `NAME` is [`Message::NAME`](crate::Message::NAME): the type's identifier, or the `name = ".."`
//! argument of `#[repliq::message]`. Module paths are not part of it, so the same definition in
//! two crates has the same fingerprint. A nested message type contributes its own fingerprint,
//! which is how renaming or changing a nested type changes every type that contains it.
//!
//! Type aliases are transparent (`type Price = u64;` hashes as `u64`), which matches the
//! archived layout. Recursive message types are not supported.

pub use repliq_types::Hasher;

/// Types that can be fields of a message, with the structural hash of their archived layout.
///
/// `#[repliq::message]` implements this for message types; repliq implements it for the
/// primitive and standard container types listed in the [module docs](self). Implementing it by
/// hand for your own rkyv type is possible, but then you promise that the value changes whenever
/// the type's archived layout does.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a field of a repliq message",
    label = "not a message field type",
    note = "message fields may be primitives, `String`, `Vec`, `Option`, `Box`, arrays, tuples, \
            maps, `repliq::Timestamp`, or types marked `#[repliq::message]`"
)]
pub trait Fingerprint {
    /// The structural hash; see the [module docs](self).
    const FINGERPRINT: u64;

    /// The type's shape as a value. [`Type::fingerprint`] of it equals
    /// [`FINGERPRINT`](Self::FINGERPRINT); see the [`descriptor`](crate::descriptor) module.
    const DESCRIPTOR: &'static Type;
}

macro_rules! leaf {
    ($($ty:ty => $name:literal $variant:ident),* $(,)?) => {
        $(impl Fingerprint for $ty {
            const FINGERPRINT: u64 = Hasher::new().str($name).finish();
            const DESCRIPTOR: &'static Type = &Type::$variant;
        })*
    };
}

leaf! {
    bool => "bool" Bool, char => "char" Char,
    u8 => "u8" U8, u16 => "u16" U16, u32 => "u32" U32, u64 => "u64" U64, u128 => "u128" U128,
    i8 => "i8" I8, i16 => "i16" I16, i32 => "i32" I32, i64 => "i64" I64, i128 => "i128" I128,
    f32 => "f32" F32, f64 => "f64" F64, usize => "usize" Usize, isize => "isize" Isize,
    () => "unit" Unit, String => "string" String, std::time::Duration => "duration" Duration,
}

macro_rules! wrapper {
    ($($ty:ident => $name:literal $variant:ident),* $(,)?) => {
        $(impl<T: Fingerprint> Fingerprint for $ty<T> {
            const FINGERPRINT: u64 = Hasher::new().str($name).u64(T::FINGERPRINT).finish();
            const DESCRIPTOR: &'static Type = &Type::$variant(Ref::Static(T::DESCRIPTOR));
        })*
    };
}

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::descriptor::{List, Ref, Type};

wrapper! {
    Vec => "vec" Vec, Option => "option" Option, Box => "box" Box,
    HashSet => "hash_set" HashSet, BTreeSet => "btree_set" BtreeSet,
}

impl<K: Fingerprint, V: Fingerprint> Fingerprint for HashMap<K, V> {
    const FINGERPRINT: u64 = Hasher::new()
        .str("hash_map")
        .u64(K::FINGERPRINT)
        .u64(V::FINGERPRINT)
        .finish();
    const DESCRIPTOR: &'static Type = &Type::HashMap {
        key: Ref::Static(K::DESCRIPTOR),
        value: Ref::Static(V::DESCRIPTOR),
    };
}

impl<K: Fingerprint, V: Fingerprint> Fingerprint for BTreeMap<K, V> {
    const FINGERPRINT: u64 = Hasher::new()
        .str("btree_map")
        .u64(K::FINGERPRINT)
        .u64(V::FINGERPRINT)
        .finish();
    const DESCRIPTOR: &'static Type = &Type::BtreeMap {
        key: Ref::Static(K::DESCRIPTOR),
        value: Ref::Static(V::DESCRIPTOR),
    };
}

impl<T: Fingerprint, const N: usize> Fingerprint for [T; N] {
    const FINGERPRINT: u64 = Hasher::new()
        .str("array")
        .u64(N as u64)
        .u64(T::FINGERPRINT)
        .finish();
    const DESCRIPTOR: &'static Type = &Type::Array {
        len: N as u64,
        of: Ref::Static(T::DESCRIPTOR),
    };
}

macro_rules! tuple {
    ($($n:literal => ($($t:ident),+)),* $(,)?) => {
        $(impl<$($t: Fingerprint),+> Fingerprint for ($($t,)+) {
            const FINGERPRINT: u64 = Hasher::new().str("tuple").u64($n)$(.u64($t::FINGERPRINT))+.finish();
            const DESCRIPTOR: &'static Type = &Type::Tuple(List::Static(&[$(Ref::Static($t::DESCRIPTOR)),+]));
        })*
    };
}

tuple! {
    1 => (A), 2 => (A, B), 3 => (A, B, C), 4 => (A, B, C, D), 5 => (A, B, C, D, E),
    6 => (A, B, C, D, E, F),
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn fnv1a_matches_reference_vectors() {
        // Reference values of 64-bit FNV-1a from the FNV specification's test suite.
        assert_eq!(Hasher::new().finish(), 0xcbf2_9ce4_8422_2325);
        assert_eq!(
            Hasher::new().raw_bytes(b"a").finish(),
            0xaf63_dc4c_8601_ec8c
        );
        assert_eq!(
            Hasher::new().raw_bytes(b"foobar").finish(),
            0x8594_4171_f739_67e8
        );
    }

    #[test]
    fn strings_are_length_prefixed() {
        // Without the prefix, ("ab", "c") and ("a", "bc") would collide.
        let a = Hasher::new().str("ab").str("c").finish();
        let b = Hasher::new().str("a").str("bc").finish();
        assert_ne!(a, b);
    }

    #[test]
    fn containers_differ_from_their_elements() {
        let all = [
            u32::FINGERPRINT,
            <Vec<u32>>::FINGERPRINT,
            <Option<u32>>::FINGERPRINT,
            <Box<u32>>::FINGERPRINT,
            <[u32; 4]>::FINGERPRINT,
            <[u32; 5]>::FINGERPRINT,
            <(u32,)>::FINGERPRINT,
            <HashMap<u32, u32>>::FINGERPRINT,
            <BTreeMap<u32, u32>>::FINGERPRINT,
            <Vec<u64>>::FINGERPRINT,
            i32::FINGERPRINT,
        ];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
