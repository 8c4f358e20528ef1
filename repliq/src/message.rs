//! The [`Message`] trait and the typed byte path: messages to bytes and back.
//!
//! These functions are what the journal uses for every record: [`serialize_into`] writes a
//! message straight into a caller-provided, aligned slot (no intermediate buffer), [`access`]
//! validates bytes and returns the archived message in place, [`deserialize`] turns an archived
//! message back into an owned value.

use std::cell::RefCell;
use std::mem::MaybeUninit;

use rkyv::api::low::{LowDeserializer, LowSerializer, LowValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::ser::allocator::{Arena, ArenaHandle};
use rkyv::ser::writer::Buffer;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Portable, Serialize};

use crate::{Fingerprint, QueueError, Result};

/// The alignment of every message payload in a journal, in bytes.
///
/// Slots passed to [`serialize_into`] and byte slices passed to [`access`] start at a multiple of
/// this. It is at least the alignment of any archived type repliq accepts.
pub const PAYLOAD_ALIGN: usize = 16;

// The journal format depends on rkyv's format features, pinned in repliq's manifest. Should a
// dependency graph ever unify them differently, fail the build rather than write another format.
const _: () = {
    assert!(
        size_of::<rkyv::Archived<usize>>() == 4,
        "rkyv must use 32-bit relative pointers"
    );
};
// Little-endian primitives: this only type-checks if `Archived<u32>` is rend's `u32_le`.
const _: fn(rkyv::Archived<u32>) -> rkyv::rend::u32_le = |x| x;

/// The serializer that writes a message into a slot. Part of [`Message`]'s bounds.
#[doc(hidden)]
pub type SlotSerializer<'a, 'b> = LowSerializer<Buffer<'a>, ArenaHandle<'b>, rancor::Error>;
/// The serializer that writes a message into a growable buffer. Part of [`Message`]'s bounds.
#[doc(hidden)]
pub type VecSerializer<'b> =
    LowSerializer<AlignedVec<PAYLOAD_ALIGN>, ArenaHandle<'b>, rancor::Error>;
/// The validator used by [`access`]. Part of [`Message`]'s bounds.
#[doc(hidden)]
pub type Validator<'a> = LowValidator<'a, rancor::Error>;
/// The deserializer used by [`deserialize`]. Part of [`Message`]'s bounds.
#[doc(hidden)]
pub type Deserializer = LowDeserializer<rancor::Error>;

/// A growable byte buffer aligned to [`PAYLOAD_ALIGN`], as returned by [`to_bytes`].
pub type AlignedBytes = AlignedVec<PAYLOAD_ALIGN>;

/// The archived form of a message: what readers get, in place, from the journal's mapping.
pub type Archived<T> = <T as Archive>::Archived;

/// A type that can be sent through a repliq queue.
///
/// A message carries a stable [`NAME`](Message::NAME) and, through its supertrait
/// [`Fingerprint`], a structural [`FINGERPRINT`](Fingerprint::FINGERPRINT) (`T::FINGERPRINT`).
///
/// Do not implement this by hand: put `#[repliq::message]` on the type (or generate it from a
/// schema with `repliq-codegen`). The attribute derives rkyv's `Archive`, `Serialize` and
/// `Deserialize` (with validation), serde's `Serialize` and `Deserialize`, [`Fingerprint`] and
/// this trait.
///
/// ```
/// #[repliq::message]
/// #[derive(Debug, PartialEq)]
/// struct Tick {
///     symbol: String,
///     price: i64,
/// }
///
/// use repliq::{Fingerprint, Message};
/// assert_eq!(Tick::NAME, "Tick");
/// assert_ne!(Tick::FINGERPRINT, 0);
/// ```
pub trait Message:
    Fingerprint
    + Sized
    + Archive<
        Archived: Portable + for<'a> CheckBytes<Validator<'a>> + Deserialize<Self, Deserializer>,
    > + for<'a, 'b> Serialize<SlotSerializer<'a, 'b>>
    + for<'b> Serialize<VecSerializer<'b>>
{
    /// The message type's stable name: its identifier, or the `name = "..."` argument of
    /// `#[repliq::message]`. Recorded in every queue created for the type.
    const NAME: &'static str;
}

/// Standard types a user sends as a whole message, out of the box. Their names are stable (they
/// are stored in every queue created for them); their fingerprints are those of the field types.
macro_rules! std_messages {
    ($($ty:ty => $name:literal),* $(,)?) => {
        $(impl Message for $ty {
            const NAME: &'static str = $name;
        })*
    };
}

std_messages! {
    String => "std.String", Vec<u8> => "std.Vec<u8>", bool => "std.bool", char => "std.char",
    u8 => "std.u8", u16 => "std.u16", u32 => "std.u32", u64 => "std.u64", u128 => "std.u128",
    i8 => "std.i8", i16 => "std.i16", i32 => "std.i32", i64 => "std.i64", i128 => "std.i128",
    f32 => "std.f32", f64 => "std.f64",
}

thread_local! {
    // Scratch space for serializers (e.g. the index of a map while it is written). Reused across
    // calls, so steady-state serialization does not allocate.
    static ARENA: RefCell<Arena> = RefCell::new(Arena::new());
}

fn with_arena<R>(f: impl FnOnce(ArenaHandle<'_>) -> R) -> R {
    ARENA.with(|arena| match arena.try_borrow_mut() {
        Ok(mut arena) => f(arena.acquire()),
        // Only reachable if a serializer re-enters repliq; fall back to a fresh arena.
        Err(_) => f(Arena::new().acquire()),
    })
}

fn serialization_error<T: Message>(reason: impl ToString) -> QueueError {
    QueueError::Serialization {
        type_name: T::NAME,
        reason: reason.to_string(),
    }
}

pub(crate) fn deserialization_error<T: Message>(len: usize, reason: impl ToString) -> QueueError {
    QueueError::Deserialization {
        type_name: T::NAME,
        len,
        reason: reason.to_string(),
    }
}

/// Serializes `value` into the start of `slot` and returns the number of bytes written.
///
/// The slot must start at a multiple of [`PAYLOAD_ALIGN`]. The archived root is at the *end* of the
/// written bytes, so readers need the exact length that this returns. A value that does not fit
/// gives [`QueueError::Serialization`]; the slot may then hold partial bytes, which the caller
/// must not publish.
///
/// # Errors
///
/// [`QueueError::Serialization`] if the slot is misaligned or too small.
pub fn serialize_into<T: Message>(value: &T, slot: &mut [MaybeUninit<u8>]) -> Result<usize> {
    if !(slot.as_ptr() as usize).is_multiple_of(PAYLOAD_ALIGN) {
        return Err(serialization_error::<T>(format_args!(
            "the slot at {:p} is not aligned to {PAYLOAD_ALIGN} bytes",
            slot.as_ptr()
        )));
    }
    let capacity = slot.len();
    with_arena(|arena| {
        rkyv::api::low::to_bytes_in_with_alloc::<_, _, rancor::Error>(
            value,
            Buffer::from(slot),
            arena,
        )
        .map(|written| written.len())
        .map_err(|e| serialization_error::<T>(format_args!("{e} (slot of {capacity} bytes)")))
    })
}

/// Serializes `value` into a new buffer aligned to [`PAYLOAD_ALIGN`].
///
/// # Errors
///
/// [`QueueError::Serialization`] if rkyv refuses the value.
pub fn to_bytes<T: Message>(value: &T) -> Result<AlignedBytes> {
    with_arena(|arena| {
        rkyv::api::low::to_bytes_in_with_alloc::<_, _, rancor::Error>(
            value,
            AlignedVec::<PAYLOAD_ALIGN>::new(),
            arena,
        )
        .map_err(serialization_error::<T>)
    })
}

/// Validates `bytes` as an archived `T` and returns it in place, without copying.
///
/// `bytes` must be exactly what [`serialize_into`] or [`to_bytes`] wrote (the root is found at
/// the end) and must start at a multiple of [`PAYLOAD_ALIGN`].
///
/// # Errors
///
/// [`QueueError::Deserialization`] if the slice is misaligned, truncated or does not hold a valid
/// `T`. Never panics, whatever the bytes are.
pub fn access<T: Message>(bytes: &[u8]) -> Result<&Archived<T>> {
    check_alignment::<T>(bytes)?;
    rkyv::api::low::access::<Archived<T>, rancor::Error>(bytes)
        .map_err(|e| deserialization_error::<T>(bytes.len(), e))
}

pub(crate) fn check_alignment<T: Message>(bytes: &[u8]) -> Result<()> {
    // An empty slice (a unit struct's archive) has no alignment to respect.
    if !bytes.is_empty() && !(bytes.as_ptr() as usize).is_multiple_of(PAYLOAD_ALIGN) {
        return Err(deserialization_error::<T>(
            bytes.len(),
            format_args!(
                "the bytes at {:p} are not aligned to {PAYLOAD_ALIGN} bytes",
                bytes.as_ptr()
            ),
        ));
    }
    Ok(())
}

/// Turns an archived message back into an owned value.
///
/// # Errors
///
/// [`QueueError::Deserialization`] if a value cannot be rebuilt (rkyv reports why).
pub fn deserialize<T: Message>(archived: &Archived<T>) -> Result<T> {
    rkyv::api::deserialize_using::<T, _, rancor::Error>(archived, &mut ())
        .map_err(|e| deserialization_error::<T>(size_of_val(archived), e))
}

/// Validates `bytes` and deserializes them: [`access`] followed by [`deserialize`].
///
/// # Errors
///
/// As [`access`] and [`deserialize`].
pub fn from_bytes<T: Message>(bytes: &[u8]) -> Result<T> {
    deserialize(access::<T>(bytes)?)
}
