//! Message types using every supported field type, with proptest strategies. Shared by the
//! descriptor tests and the `write_every_type` fixture binary (which writes queues for the
//! CLI and the Python reader to print).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use proptest::collection::{btree_map, btree_set, hash_map, hash_set, vec};
use proptest::option;
use proptest::prelude::*;
use repliq::Timestamp;

/// A unit struct.
#[repliq::message(name = "sink.Marker")]
#[derive(Debug, Clone, PartialEq)]
pub struct Marker;

/// A newtype.
#[repliq::message(name = "sink.Id")]
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[rkyv(derive(PartialEq, Eq, PartialOrd, Ord, Hash))]
pub struct Id(pub u64);

/// A pair-like tuple struct.
#[repliq::message(name = "sink.Point")]
#[derive(Debug, Clone, PartialEq)]
pub struct Point(pub i32, pub i32);

/// A nested struct.
#[repliq::message(name = "sink.Inner")]
#[derive(Debug, Clone, PartialEq)]
pub struct Inner {
    pub name: String,
    pub tags: Vec<String>,
    pub ratio: f32,
    pub r#type: u8,
}

/// An enum with every variant shape.
#[repliq::message(name = "sink.Shape")]
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    Empty,
    Circle(f64),
    Rect { w: u32, h: u32 },
    Pair(i8, String),
    Nested(Box<Inner>),
    NoFields {},
    NoElems(),
}

/// A C-like enum.
#[repliq::message(name = "sink.Level")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[rkyv(derive(PartialEq, Eq, PartialOrd, Ord, Hash))]
pub enum Level {
    Low,
    Mid,
    High,
}

/// Every supported field type at least once.
#[repliq::message(name = "sink.Everything")]
#[derive(Debug, Clone, PartialEq)]
pub struct Everything {
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
    pub by_name: HashMap<String, Vec<u8>>,
    pub by_id: HashMap<u32, Inner>,
    pub by_level: HashMap<Level, bool>,
    pub ordered: BTreeMap<i64, Shape>,
    pub ordered_ids: BTreeMap<Id, Option<Inner>>,
    pub names: BTreeSet<String>,
    pub numbers: HashSet<u32>,
    pub id: Id,
    pub point: Point,
    pub marker: Marker,
    pub level: Level,
    pub shapes: Vec<Shape>,
    pub boxed: Box<String>,
}

pub fn inner() -> impl Strategy<Value = Inner> {
    (".{0,12}", vec(".{0,20}", 0..4), any::<f32>(), any::<u8>()).prop_map(
        |(name, tags, ratio, r#type)| Inner {
            name,
            tags,
            ratio,
            r#type,
        },
    )
}

pub fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        Just(Shape::Empty),
        any::<f64>().prop_map(Shape::Circle),
        (any::<u32>(), any::<u32>()).prop_map(|(w, h)| Shape::Rect { w, h }),
        (any::<i8>(), ".{0,10}").prop_map(|(a, b)| Shape::Pair(a, b)),
        inner().prop_map(|i| Shape::Nested(Box::new(i))),
        Just(Shape::NoFields {}),
        Just(Shape::NoElems()),
    ]
}

pub fn level() -> impl Strategy<Value = Level> {
    prop_oneof![Just(Level::Low), Just(Level::Mid), Just(Level::High)]
}

pub fn everything() -> impl Strategy<Value = Everything> {
    let scalars = (
        any::<bool>(),
        any::<char>(),
        (
            any::<u8>(),
            any::<u16>(),
            any::<u32>(),
            any::<u64>(),
            // serde_json::to_value refuses 128-bit integers outside the 64-bit range.
            any::<u64>().prop_map(u128::from),
        ),
        (
            any::<i8>(),
            any::<i16>(),
            any::<i32>(),
            any::<i64>(),
            any::<i64>().prop_map(i128::from),
        ),
        (any::<f32>(), any::<f64>()),
        (any::<u32>(), any::<i32>()).prop_map(|(u, i)| (u as usize, i as isize)),
        ".{0,40}",
        (any::<u64>(), 0..1_000_000_000u32).prop_map(|(s, n)| Duration::new(s, n)),
        any::<i64>().prop_map(Timestamp::from_nanos),
    );
    let collections = (
        vec(inner(), 0..4),
        vec(any::<u8>(), 0..40),
        option::of(shape().prop_map(Box::new)),
        option::of(option::of(any::<u16>())),
        any::<[[u16; 3]; 2]>(),
        (any::<u8>(), ".{0,12}", shape()),
        hash_map(".{0,8}", vec(any::<u8>(), 0..5), 0..12),
        hash_map(any::<u32>(), inner(), 0..6),
        hash_map(level(), any::<bool>(), 0..3),
        btree_map(any::<i64>(), shape(), 0..40),
        btree_map(any::<u64>().prop_map(Id), option::of(inner()), 0..8),
        btree_set(".{0,6}", 0..40),
    );
    let rest = (
        hash_set(any::<u32>(), 0..20),
        any::<u64>().prop_map(Id),
        (any::<i32>(), any::<i32>()).prop_map(|(x, y)| Point(x, y)),
        level(),
        vec(shape(), 0..6),
        ".{0,30}".prop_map(Box::new),
    );
    (scalars, collections, rest).prop_map(
        |(
            (flag, letter, small, signed, floats, sizes, text, took, at),
            (
                inners,
                bytes,
                maybe,
                maybe_maybe,
                grid,
                triple,
                by_name,
                by_id,
                by_level,
                ordered,
                ordered_ids,
                names,
            ),
            (numbers, id, point, level, shapes, boxed),
        )| Everything {
            flag,
            letter,
            small,
            signed,
            floats,
            sizes,
            nothing: (),
            text,
            took,
            at,
            inners,
            bytes,
            maybe,
            maybe_maybe,
            grid,
            empty_array: [],
            triple,
            by_name,
            by_id,
            by_level,
            ordered,
            ordered_ids,
            names,
            numbers,
            id,
            point,
            marker: Marker,
            level,
            shapes,
            boxed,
        },
    )
}

/// `serde_json::to_value` of a value, with hash-set arrays (whose order is the process's hash
/// order) sorted; apply [`sort_sets`] to the rendered value too before comparing.
pub fn expected_json(value: &Everything) -> serde_json::Value {
    let mut v = serde_json::to_value(value).expect("serializable");
    sort_sets(&mut v);
    v
}

/// Sorts the arrays of the hash-set fields of a rendered [`Everything`].
pub fn sort_sets(v: &mut serde_json::Value) {
    if let Some(serde_json::Value::Array(a)) = v.get_mut("numbers") {
        a.sort_by_key(|x| x.as_u64());
    }
}

/// Writes `count` generated [`Everything`] values (a fixed seed: the same values every run) into
/// a new queue at `dir` with small segments, and returns them.
///
/// # Panics
///
/// If the queue cannot be written.
pub fn write_sample_queue(dir: &std::path::Path, count: usize) -> Vec<Everything> {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut q = repliq::QueueOptions::new()
        .capacity(1 << 20)
        .segment_size(256 * 1024)
        .max_message_size(64 * 1024)
        .create::<Everything>(dir)
        .expect("creating the queue");
    let values: Vec<Everything> = (0..count)
        .map(|_| {
            everything()
                .new_tree(&mut runner)
                .expect("a value")
                .current()
        })
        .collect();
    for v in &values {
        q.enqueue(v).expect("enqueue");
    }
    values
}
