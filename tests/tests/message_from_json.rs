//! `descriptor::from_json`, the inverse of the JSON renderer: for generated values of every
//! supported type except maps and sets, encoding `serde_json::to_value(v)` with the descriptor
//! alone gives bytes that rkyv validates as the Rust type, that deserialize to `v`, and that
//! render back to the same JSON; JSON that does not fit names the place; maps are refused.

use std::time::Duration;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use repliq::descriptor::{Schema, check_json_encodable, from_json, to_json};
use repliq::{Fingerprint, Timestamp};
use repliq_tests::kitchen_sink::*;
use serde_json::json;

#[repliq::message(name = "test.NoMaps")]
#[derive(Debug, Clone, PartialEq)]
pub struct NoMaps {
    pub flag: bool,
    pub letter: char,
    pub small: (u8, u16, u32, u64, u128),
    pub signed: (i8, i16, i32, i64, i128),
    pub floats: (f32, f64),
    pub sizes: (usize, isize),
    pub nothing: (),
    pub text: String,
    pub took: Duration,
    pub at: Timestamp,
    pub inners: Vec<Inner>,
    pub bytes: Vec<u8>,
    pub maybe: Option<Box<Shape>>,
    pub maybe_maybe: Option<Option<u16>>,
    pub grid: [[u16; 3]; 2],
    pub empty_array: [u64; 0],
    pub triple: (u8, String, Shape),
    pub id: Id,
    pub point: Point,
    pub marker: Marker,
    pub level: Level,
    pub shapes: Vec<Shape>,
    pub boxed: Box<String>,
    pub nested: Vec<Vec<Option<String>>>,
}

fn no_maps() -> impl Strategy<Value = NoMaps> {
    let nested = proptest::collection::vec(
        proptest::collection::vec(proptest::option::of(".{0,16}"), 0..3),
        0..3,
    );
    (everything(), nested).prop_map(|(e, nested)| NoMaps {
        flag: e.flag,
        letter: e.letter,
        small: e.small,
        signed: e.signed,
        floats: e.floats,
        sizes: e.sizes,
        nothing: e.nothing,
        text: e.text,
        took: e.took,
        at: e.at,
        inners: e.inners,
        bytes: e.bytes,
        maybe: e.maybe,
        maybe_maybe: e.maybe_maybe,
        grid: e.grid,
        empty_array: e.empty_array,
        triple: e.triple,
        id: e.id,
        point: e.point,
        marker: e.marker,
        level: e.level,
        shapes: e.shapes,
        boxed: e.boxed,
        nested,
    })
}

/// Encodes `json` for `NoMaps` and checks the bytes with rkyv and the renderer.
fn round_trip(json: &serde_json::Value) -> NoMaps {
    let schema = Schema::from_json(&Schema::of::<NoMaps>().to_json_string()).unwrap();
    let bytes = from_json(&schema.root, json).expect("encodes");
    let mut aligned = repliq::AlignedBytes::new();
    aligned.extend_from_slice(&bytes);
    let value = repliq::from_bytes::<NoMaps>(&aligned).expect("rkyv validates and deserializes");
    assert_eq!(&to_json(&schema.root, &aligned).expect("renders"), json);
    value
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn encoding_serde_json_gives_the_value(value in no_maps()) {
        let json = serde_json::to_value(&value).unwrap();
        let back = round_trip(&json);
        // NaN floats are not equal to themselves: compare as JSON (NaN renders as null).
        prop_assert_eq!(serde_json::to_value(&back).unwrap(), json);
    }
}

#[test]
fn long_strings_and_many_elements() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut value = no_maps().new_tree(&mut runner).unwrap().current();
    value.text = "y".repeat(100_000);
    value.bytes = (0..50_000).map(|i| i as u8).collect();
    value.shapes = (0..300)
        .map(|i| Shape::Pair(i as i8, format!("shape {i}")))
        .collect();
    let json = serde_json::to_value(&value).unwrap();
    assert_eq!(serde_json::to_value(round_trip(&json)).unwrap(), json);
}

#[test]
fn misfit_json_names_the_place() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let value = no_maps().new_tree(&mut runner).unwrap().current();
    let good = serde_json::to_value(&value).unwrap();
    let cases = [
        ("/flag", json!("yes"), "expected a bool"),
        ("/small/0", json!(300), "range of u8"),
        ("/letter", json!("ab"), "one-character"),
        ("/level", json!("Highest"), "has no variant \"Highest\""),
        ("/grid/0", json!([1, 2]), "expected 3 elements"),
        (
            "/inners",
            json!([{"name": "n", "tags": []}]),
            "missing field \"ratio\"",
        ),
        (
            "/took",
            json!({"secs": 1, "nanos": 2_000_000_000u64}),
            "10^9",
        ),
    ];
    for (pointer, bad, reason) in cases {
        let mut json = good.clone();
        *json.pointer_mut(pointer).unwrap() = bad;
        let err = from_json(NoMaps::DESCRIPTOR, &json).unwrap_err();
        assert!(err.path.starts_with(pointer), "{pointer}: {err}");
        assert!(err.reason.contains(reason), "{pointer}: {err}");
    }
    // A missing Option field is None, unknown keys are ignored (as serde does).
    let mut json = good.clone();
    json.as_object_mut().unwrap().remove("maybe");
    json.as_object_mut()
        .unwrap()
        .insert("extra".into(), json!(1));
    let bytes = from_json(NoMaps::DESCRIPTOR, &json).unwrap();
    let mut aligned = repliq::AlignedBytes::new();
    aligned.extend_from_slice(&bytes);
    assert_eq!(repliq::from_bytes::<NoMaps>(&aligned).unwrap().maybe, None);
}

#[test]
fn maps_and_sets_are_refused_up_front() {
    assert!(check_json_encodable(NoMaps::DESCRIPTOR).is_ok());
    let err = check_json_encodable(Everything::DESCRIPTOR).unwrap_err();
    assert_eq!(err.path, "/by_name");
    assert!(err.reason.contains("maps and sets"));
}
