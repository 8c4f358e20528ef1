//! Type descriptors: for every supported type, the descriptor hashes to `FINGERPRINT` and gives
//! rkyv's archived size and alignment; the generic JSON renderer agrees with
//! `serde_json::to_value` of the deserialized value (proptest over nested types), and so does
//! its text straight from the bytes (`to_json_text`); it survives a
//! trip through `schema.json`, and never panics on damaged bytes.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use repliq::descriptor::{Schema, Type, to_json};
use repliq::{Archived, Fingerprint, Message, Timestamp};
use repliq_tests::kitchen_sink::*;

fn check<T: Fingerprint>(what: &str, archived: (usize, usize)) {
    assert_eq!(
        T::DESCRIPTOR.fingerprint(),
        T::FINGERPRINT,
        "fingerprint of the descriptor of {what}"
    );
    let layout = T::DESCRIPTOR.layout();
    assert_eq!(
        (layout.size, layout.align),
        archived,
        "archived size and alignment of {what}"
    );
}

/// Checks each type against `size_of`/`align_of` of its `Archived<T>`.
macro_rules! check_all {
    ($($t:ty),* $(,)?) => {{
        $(check::<$t>(
            stringify!($t),
            (size_of::<Archived<$t>>(), align_of::<Archived<$t>>()),
        );)*
    }};
}

#[test]
fn every_supported_type_has_a_matching_descriptor() {
    check_all!(
        bool, char, u8, u16, u32, u64, u128, i8, i16, i32, i64, i128, f32, f64, usize, isize,
        (), String, Duration, Timestamp,
        Vec<u8>, Vec<String>, Option<u8>, Option<u64>, Option<Option<u16>>, Option<String>,
        Box<u32>, Box<String>, Option<Box<Inner>>, [u8; 3], [u64; 0], [[u16; 3]; 2], (u8,),
        (u8, u64), (u8, String, Shape), (u8, u16, u32, u64, u128, i8), HashMap<String, u8>,
        HashMap<u32, Inner>, BTreeMap<i64, Shape>, BTreeMap<u8, ()>, HashSet<u32>,
        BTreeSet<String>, Marker, Id, Point, Inner, Shape, Level, Everything, repliq_tests::Order,
    );
}

#[test]
fn std_messages_have_descriptors() {
    fn std<T: Message>(expected: &Type) {
        assert_eq!(T::DESCRIPTOR, expected);
        let schema = Schema::of::<T>();
        assert_eq!(schema.name, T::NAME);
        assert_eq!(schema.fingerprint, schema.root.fingerprint());
    }
    std::<String>(&Type::String);
    std::<u64>(&Type::U64);
    std::<Vec<u8>>(&Type::Vec(repliq::descriptor::Ref::Static(&Type::U8)));
}

#[test]
fn schema_json_round_trips_and_is_checked() {
    let schema = Schema::of::<Everything>();
    let text = schema.to_json_string();
    let back = Schema::from_json(&text).expect("parses");
    assert_eq!(back, schema);
    assert_eq!(back.root.fingerprint(), Everything::FINGERPRINT);
    // A descriptor that does not hash to the stored fingerprint is refused.
    let tampered = text.replacen("\"flag\"", "\"flog\"", 1);
    assert!(Schema::from_json(&tampered).is_err());
    // The JSON form is readable: leaves are strings, containers one-key objects.
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["format"], "repliq.schema.v1");
    assert_eq!(v["name"], "sink.Everything");
    assert_eq!(v["root"]["message"]["struct"]["fields"][0]["type"], "bool");
    assert_eq!(
        v["root"]["message"]["struct"]["fields"][11]["type"],
        serde_json::json!({"vec": "u8"})
    );
}

fn render(value: &Everything, root: &Type) -> serde_json::Value {
    let bytes = repliq::to_bytes(value).expect("serializes");
    let mut got = to_json(root, &bytes).expect("renders");
    sort_sets(&mut got);
    got
}

#[test]
fn btree_of_many_levels_and_big_strings_render() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut value = everything().new_tree(&mut runner).unwrap().current();
    value.ordered = (0..500)
        .map(|i| (i * 7 - 1000, Shape::Circle(i as f64)))
        .collect();
    value.names = (0..300).map(|i| format!("name number {i}")).collect();
    value.numbers = (0..300).collect();
    value.text = "x".repeat(10_000);
    assert_eq!(
        render(&value, Everything::DESCRIPTOR),
        expected_json(&value)
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The renderer, given only the descriptor (here as read back from `schema.json`), prints
    /// what serde prints for the typed value.
    #[test]
    fn rendering_equals_serde_of_the_typed_value(value in everything()) {
        let schema = Schema::from_json(&Schema::of::<Everything>().to_json_string()).unwrap();
        let typed = repliq::from_bytes::<Everything>(&repliq::to_bytes(&value).unwrap()).unwrap();
        prop_assert_eq!(render(&value, &schema.root), expected_json(&typed));
        // Straight to text: the text parses to the same value (fields in declaration order).
        let bytes = repliq::to_bytes(&value).unwrap();
        let mut text = b"prefix ".to_vec();
        repliq::descriptor::to_json_text(&schema.root, &bytes, &mut text).expect("renders as text");
        let mut parsed: serde_json::Value = serde_json::from_slice(&text[7..]).expect("JSON text");
        sort_sets(&mut parsed);
        prop_assert_eq!(parsed, expected_json(&typed));
    }

    /// Damaged bytes give an error or a value, never a panic.
    #[test]
    fn damaged_bytes_never_panic(
        value in everything(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let bytes = repliq::to_bytes(&value).unwrap();
        let mut damaged = repliq::AlignedBytes::new();
        damaged.extend_from_slice(&bytes);
        for (at, b) in flips {
            let i = at.index(damaged.len());
            damaged[i] ^= b;
        }
        // Validation without building the JSON gives the same verdict and error.
        for bytes in [&damaged[..], &damaged[..cut.index(damaged.len())]] {
            let rendered = to_json(Everything::DESCRIPTOR, bytes);
            let checked = repliq::descriptor::validate(Everything::DESCRIPTOR, bytes);
            prop_assert_eq!(&checked, &rendered.clone().map(drop));
            // And straight to text: the same verdict, the same error, the same value; nothing
            // written on an error.
            let mut text = Vec::new();
            let written = repliq::descriptor::to_json_text(Everything::DESCRIPTOR, bytes, &mut text);
            prop_assert_eq!(&written, &checked);
            match rendered {
                Ok(v) => {
                    let parsed: serde_json::Value = serde_json::from_slice(&text).expect("JSON text");
                    prop_assert_eq!(parsed, v);
                }
                Err(_) => prop_assert!(text.is_empty()),
            }
        }
    }
}
