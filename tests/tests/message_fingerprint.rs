//! Fingerprints are structural: equal for identical definitions anywhere, different when the
//! name, a field's name, type or position, or an enum variant changes; and they follow the
//! algorithm documented in `repliq::fingerprint`, which `repliq-codegen` reimplements.

use repliq::fingerprint::Hasher;
use repliq::{Fingerprint, Message};

/// Declares `mod $m { pub struct T {...} }` so that variants of one definition can sit side by side.
macro_rules! variant {
    ($m:ident, $($item:tt)*) => {
        mod $m {
            #[allow(dead_code)]
            #[repliq::message(name = "T")]
            #[derive(Debug)]
            $($item)*
        }
    };
}

variant!(
    base,
    pub struct T {
        pub a: u32,
        pub b: String,
    }
);
variant!(
    same,
    pub struct T {
        pub a: u32,
        pub b: String,
    }
);
variant!(
    renamed_field,
    pub struct T {
        pub x: u32,
        pub b: String,
    }
);
variant!(
    retyped_field,
    pub struct T {
        pub a: u64,
        pub b: String,
    }
);
variant!(
    reordered,
    pub struct T {
        pub b: String,
        pub a: u32,
    }
);
variant!(
    extra_field,
    pub struct T {
        pub a: u32,
        pub b: String,
        pub c: bool,
    }
);
variant!(
    fewer_fields,
    pub struct T {
        pub a: u32,
    }
);
variant!(tuple_shape, pub struct T(pub u32, pub String););
variant!(
    wrapped,
    pub struct T {
        pub a: Option<u32>,
        pub b: String,
    }
);
variant!(
    array_len,
    pub struct T {
        pub a: [u32; 2],
        pub b: String,
    }
);
variant!(
    array_len_3,
    pub struct T {
        pub a: [u32; 3],
        pub b: String,
    }
);

variant!(
    e_base,
    pub enum T {
        A,
        B(u32),
        C { x: i64 },
    }
);
variant!(
    e_same,
    pub enum T {
        A,
        B(u32),
        C { x: i64 },
    }
);
variant!(
    e_renamed,
    pub enum T {
        A,
        Bee(u32),
        C { x: i64 },
    }
);
variant!(
    e_reordered,
    pub enum T {
        B(u32),
        A,
        C { x: i64 },
    }
);
variant!(
    e_added,
    pub enum T {
        A,
        B(u32),
        C { x: i64 },
        D,
    }
);
variant!(
    e_payload,
    pub enum T {
        A,
        B(u64),
        C { x: i64 },
    }
);
variant!(
    e_shape,
    pub enum T {
        A,
        B { x: u32 },
        C { x: i64 },
    }
);
variant!(
    e_field,
    pub enum T {
        A,
        B(u32),
        C { y: i64 },
    }
);

mod nested_v1 {
    #[repliq::message(name = "Inner")]
    #[derive(Debug)]
    pub struct Inner {
        pub v: u32,
    }
    #[repliq::message(name = "Outer")]
    #[derive(Debug)]
    pub struct Outer {
        pub inner: Vec<Inner>,
    }
}

mod nested_v2 {
    #[repliq::message(name = "Inner")]
    #[derive(Debug)]
    pub struct Inner {
        pub v: u64,
    }
    #[repliq::message(name = "Outer")]
    #[derive(Debug)]
    pub struct Outer {
        pub inner: Vec<Inner>,
    }
}

/// The twin of `repliq_tests::Order`, which lives in another crate.
#[repliq::message(name = "fixture.Order")]
#[derive(Debug)]
pub struct Order {
    pub id: u64,
    pub symbol: String,
    pub price: Option<i64>,
    pub legs: Vec<(u32, u64)>,
}

#[test]
fn identical_definitions_agree_across_modules_and_crates() {
    assert_eq!(base::T::FINGERPRINT, same::T::FINGERPRINT);
    assert_eq!(e_base::T::FINGERPRINT, e_same::T::FINGERPRINT);
    assert_eq!(Order::FINGERPRINT, repliq_tests::Order::FINGERPRINT);
    assert_eq!(<Order as Message>::NAME, "fixture.Order");
}

#[test]
fn any_structural_change_changes_the_fingerprint() {
    let structs = [
        ("base", base::T::FINGERPRINT),
        ("renamed field", renamed_field::T::FINGERPRINT),
        ("retyped field", retyped_field::T::FINGERPRINT),
        ("reordered fields", reordered::T::FINGERPRINT),
        ("extra field", extra_field::T::FINGERPRINT),
        ("fewer fields", fewer_fields::T::FINGERPRINT),
        ("tuple shape", tuple_shape::T::FINGERPRINT),
        ("wrapped in Option", wrapped::T::FINGERPRINT),
        ("array", array_len::T::FINGERPRINT),
        ("array length", array_len_3::T::FINGERPRINT),
        ("enum", e_base::T::FINGERPRINT),
        ("renamed variant", e_renamed::T::FINGERPRINT),
        ("reordered variants", e_reordered::T::FINGERPRINT),
        ("added variant", e_added::T::FINGERPRINT),
        ("variant payload type", e_payload::T::FINGERPRINT),
        ("variant shape", e_shape::T::FINGERPRINT),
        ("variant field name", e_field::T::FINGERPRINT),
    ];
    for (i, (what_a, a)) in structs.iter().enumerate() {
        for (what_b, b) in &structs[i + 1..] {
            assert_ne!(a, b, "`{what_a}` and `{what_b}` must differ");
        }
    }
}

#[test]
fn a_change_in_a_nested_message_reaches_the_outer_one() {
    assert_ne!(nested_v1::Inner::FINGERPRINT, nested_v2::Inner::FINGERPRINT);
    assert_ne!(nested_v1::Outer::FINGERPRINT, nested_v2::Outer::FINGERPRINT);
}

#[test]
fn the_name_argument_is_part_of_the_fingerprint() {
    mod a {
        #[repliq::message(name = "a.T")]
        #[derive(Debug)]
        pub struct T(pub u8);
    }
    mod b {
        #[repliq::message(name = "b.T")]
        #[derive(Debug)]
        pub struct T(pub u8);
    }
    assert_ne!(a::T::FINGERPRINT, b::T::FINGERPRINT);
}

#[test]
fn fingerprint_follows_the_documented_algorithm() {
    // base::T = struct "T" { a: u32, b: String }, spelled out from the `repliq::fingerprint` docs.
    let u32_fp = Hasher::new().str("u32").finish();
    let string_fp = Hasher::new().str("string").finish();
    let expected = Hasher::new()
        .str("repliq.message.v1")
        .str("struct")
        .str("T")
        .str("named")
        .u64(2)
        .str("a")
        .u64(u32_fp)
        .str("b")
        .u64(string_fp)
        .finish();
    assert_eq!(base::T::FINGERPRINT, expected);

    // e_base::T = enum "T" { A, B(u32), C { x: i64 } }.
    let expected = Hasher::new()
        .str("repliq.message.v1")
        .str("enum")
        .str("T")
        .u64(3)
        .str("A")
        .str("unit")
        .u64(0)
        .str("B")
        .str("tuple")
        .u64(1)
        .str("0")
        .u64(u32_fp)
        .str("C")
        .str("named")
        .u64(1)
        .str("x")
        .u64(Hasher::new().str("i64").finish())
        .finish();
    assert_eq!(e_base::T::FINGERPRINT, expected);
}

#[test]
fn fingerprints_are_stable_across_builds() {
    // Pinned values, computed independently of Rust (a 15-line Python FNV-1a over the documented
    // item stream). A change here means every existing queue of these types becomes unreadable:
    // only change them together with a new fingerprint version ("repliq.message.v2").
    assert_eq!(base::T::FINGERPRINT, 0xb25f_1548_ec7b_c9cd);
    assert_eq!(repliq::Timestamp::FINGERPRINT, 0xe6f9_dd42_efb7_1905);
}
