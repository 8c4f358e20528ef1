//! Every message shape goes through the slot serializer and validated access and comes back equal;
//! bad bytes give `QueueError::Deserialization` or `Serialization`, never a panic.

use std::collections::{BTreeMap, HashMap};
use std::mem::MaybeUninit;

use repliq::{AlignedBytes, Message, QueueError, Timestamp};
use repliq_tests::AlignedSlot;

#[repliq::message]
#[derive(Debug, Clone, PartialEq)]
#[rkyv(derive(Debug))]
struct Named {
    id: u64,
    text: String,
    flag: bool,
    ch: char,
    small: (i8, u16, i32),
    big: (u128, i128),
    real: (f32, f64),
}

#[repliq::message]
#[derive(Debug, Clone, PartialEq)]
struct Tuple(u32, String, Vec<u8>);

#[repliq::message]
#[derive(Debug, Clone, PartialEq)]
struct Unit;

#[repliq::message]
#[derive(Debug, Clone, PartialEq)]
enum Mixed {
    Empty,
    Pair(i64, Option<String>),
    Record {
        at: Timestamp,
        tags: BTreeMap<String, u32>,
    },
}

#[repliq::message]
#[derive(Debug, Clone, PartialEq)]
struct Containers {
    list: Vec<Named>,
    maybe: Option<Box<Tuple>>,
    grid: [[u8; 3]; 2],
    map: HashMap<u64, Mixed>,
    unit: Unit,
}

fn named() -> Named {
    Named {
        id: 42,
        text: "héllo".into(),
        flag: true,
        ch: 'λ',
        small: (-1, 65_000, -100_000),
        big: (u128::MAX, i128::MIN),
        real: (1.5, -2.25),
    }
}

fn values() -> (Named, Tuple, Unit, Vec<Mixed>, Containers) {
    let mixed = vec![
        Mixed::Empty,
        Mixed::Pair(-7, Some("seven".into())),
        Mixed::Pair(0, None),
        Mixed::Record {
            at: Timestamp::from_nanos(1_700_000_000_000_000_000),
            tags: [("a".to_string(), 1), ("b".to_string(), 2)].into(),
        },
    ];
    let containers = Containers {
        list: vec![named(), named()],
        maybe: Some(Box::new(Tuple(1, "x".into(), vec![1, 2, 3]))),
        grid: [[1, 2, 3], [4, 5, 6]],
        map: mixed
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, m)| (i as u64, m))
            .collect(),
        unit: Unit,
    };
    (
        named(),
        Tuple(9, "nine".into(), vec![9; 100]),
        Unit,
        mixed,
        containers,
    )
}

/// Slot serializer → validated access → deserialize, and the `to_bytes`/`from_bytes` pair.
fn round_trip<T: Message + PartialEq + std::fmt::Debug>(value: &T) -> usize {
    let mut slot = AlignedSlot::<4096>::new();
    let len = repliq::serialize_into(value, &mut slot.0).expect("serialize");
    let bytes = repliq::to_bytes(value).expect("to_bytes");
    assert_eq!(
        bytes.len(),
        len,
        "slot and vector serializers agree on the length"
    );
    let archived = repliq::access::<T>(&bytes).expect("access");
    assert_eq!(
        &repliq::deserialize::<T>(archived).expect("deserialize"),
        value
    );
    assert_eq!(&repliq::from_bytes::<T>(&bytes).expect("from_bytes"), value);
    len
}

#[test]
fn every_shape_round_trips() {
    let (named, tuple, unit, mixed, containers) = values();
    round_trip(&named);
    round_trip(&tuple);
    assert_eq!(round_trip(&unit), 0, "a unit struct archives to zero bytes");
    for m in &mixed {
        round_trip(m);
    }
    round_trip(&containers);
}

#[test]
fn archived_fields_are_readable_in_place() {
    let bytes = repliq::to_bytes(&named()).unwrap();
    let archived = repliq::access::<Named>(&bytes).unwrap();
    assert_eq!(archived.id, 42);
    assert_eq!(archived.text, "héllo");
    assert!(archived.flag);

    let rec = Mixed::Record {
        at: Timestamp::from_nanos(5),
        tags: BTreeMap::new(),
    };
    let bytes = repliq::to_bytes(&rec).unwrap();
    match repliq::access::<Mixed>(&bytes).unwrap() {
        ArchivedMixed::Record { at, tags } => {
            assert_eq!(at.nanos(), 5);
            assert!(tags.is_empty());
        }
        other => panic!("wrong variant: {:?}", std::mem::discriminant(other)),
    }
}

#[test]
fn serde_json_renders_a_message() {
    let json = serde_json::to_string(&Tuple(1, "a".into(), vec![2])).unwrap();
    assert_eq!(json, r#"[1,"a",[2]]"#);
    let back: Named = serde_json::from_str(&serde_json::to_string(&named()).unwrap()).unwrap();
    assert_eq!(back, named());
}

#[test]
fn unchecked_access_reads_valid_bytes() {
    let bytes = repliq::to_bytes(&named()).unwrap();
    // SAFETY: `bytes` were just written by `to_bytes::<Named>` and are aligned by `AlignedVec`.
    #[allow(unsafe_code)]
    let archived = unsafe { repliq::access_unchecked::<Named>(&bytes) };
    assert_eq!(archived.text, "héllo");
}

fn expect_deserialization_error(result: repliq::Result<impl std::fmt::Debug>, needle: &str) {
    match result {
        Err(QueueError::Deserialization {
            type_name, reason, ..
        }) => {
            assert_eq!(type_name, "Named");
            assert!(
                reason.contains(needle),
                "reason {reason:?} lacks {needle:?}"
            );
        }
        other => panic!("expected a Deserialization error, got {other:?}"),
    }
}

#[test]
fn misaligned_bytes_are_refused() {
    let bytes = repliq::to_bytes(&named()).unwrap();
    let mut shifted = vec![0u8; bytes.len() + 16];
    // Find an offset that is deliberately *not* 16-aligned.
    let off = (1..16)
        .find(|o| !(shifted.as_ptr() as usize + o).is_multiple_of(16))
        .unwrap();
    shifted[off..off + bytes.len()].copy_from_slice(&bytes);
    expect_deserialization_error(
        repliq::access::<Named>(&shifted[off..off + bytes.len()]),
        "not aligned",
    );
}

#[test]
fn truncated_and_empty_bytes_are_refused() {
    let bytes = repliq::to_bytes(&named()).unwrap();
    for len in [0, 1, 8, bytes.len() / 2, bytes.len() - 1] {
        let err = repliq::access::<Named>(&bytes[..len]).unwrap_err();
        assert!(
            matches!(err, QueueError::Deserialization { len: l, .. } if l == len),
            "{err:?}"
        );
        assert!(
            err.to_string().starts_with("cannot read a `Named` from"),
            "{err}"
        );
    }
}

#[test]
fn corrupt_bytes_give_errors_not_panics() {
    let bytes = repliq::to_bytes(&Containers {
        list: vec![named()],
        maybe: None,
        grid: [[0; 3]; 2],
        map: HashMap::new(),
        unit: Unit,
    })
    .unwrap();
    let mut refused = 0;
    // Flip every byte in turn: validation must either accept (a still-valid value) or refuse.
    for i in 0..bytes.len() {
        let mut copy = aligned_copy(&bytes);
        copy[i] ^= 0xff;
        match repliq::access::<Containers>(&copy) {
            Ok(_) => {}
            Err(QueueError::Deserialization { .. }) => refused += 1,
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert!(refused > 0, "some corruptions must be detected");
    // Random bytes of many lengths.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    for len in 0..300 {
        let mut copy = aligned_copy(&vec![0u8; len]);
        for b in copy.iter_mut() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *b = state as u8;
        }
        let _ = repliq::access::<Containers>(&copy);
    }
}

/// An aligned copy of some bytes.
fn aligned_copy(bytes: &[u8]) -> AlignedBytes {
    let mut v = AlignedBytes::new();
    v.extend_from_slice(bytes);
    v
}

#[test]
fn slot_errors_are_serialization_errors() {
    // Too small.
    let mut slot = AlignedSlot::<16>::new();
    let err = repliq::serialize_into(&named(), &mut slot.0).unwrap_err();
    assert!(
        matches!(&err, QueueError::Serialization { type_name: "Named", reason } if reason.contains("slot of 16 bytes")),
        "{err:?}"
    );
    // Misaligned.
    let mut slot = AlignedSlot::<4096>::new();
    let err = repliq::serialize_into(&named(), &mut slot.0[1..]).unwrap_err();
    assert!(
        matches!(&err, QueueError::Serialization { reason, .. } if reason.contains("not aligned")),
        "{err:?}"
    );
    // Exactly large enough works.
    let len = repliq::to_bytes(&named()).unwrap().len();
    let mut slot = AlignedSlot::<4096>::new();
    let slot: &mut [MaybeUninit<u8>] = &mut slot.0[..len];
    assert_eq!(repliq::serialize_into(&named(), slot).unwrap(), len);
}
