//! Type descriptors: the shape of a message type as a value.
//!
//! Every [`Fingerprint`](crate::Fingerprint) type has a constant [`Type`] descriptor,
//! [`Fingerprint::DESCRIPTOR`](crate::Fingerprint::DESCRIPTOR): `#[repliq::message]` generates it
//! for message structs and enums (name, fields in order with their types, variants, nested
//! message types), and repliq provides it for primitives and standard containers. The
//! fingerprint is a hash of the descriptor ([`Type::fingerprint`] computes it and equals
//! `Fingerprint::FINGERPRINT`), and the descriptor fixes the archived layout, so together with
//! the rules of `docs/FORMAT.md` ("Archived values") it is enough to read a record without the
//! Rust type: [`to_json`] renders a record as JSON.
//!
//! A queue stores its message type's [`Schema`] as `schema.json` in the queue directory; tools
//! (`repliq cat`, `repliq tail`, the Python reader in `clients/python`) read it.
//!
//! ```
//! use repliq::Fingerprint;
//! use repliq::descriptor::{Schema, Type};
//!
//! #[repliq::message]
//! struct Tick {
//!     symbol: String,
//!     prices: Vec<i64>,
//! }
//!
//! assert_eq!(Tick::DESCRIPTOR.fingerprint(), Tick::FINGERPRINT);
//! let schema = Schema::of::<Tick>();
//! assert_eq!(schema.root.fingerprint(), Tick::FINGERPRINT);
//! let Type::Message(m) = Tick::DESCRIPTOR else { unreachable!() };
//! assert_eq!(m.name, "Tick");
//! ```

mod encode;
mod render;
mod text;

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

pub use encode::{EncodeError, check_json_encodable, from_json};
pub use render::{RenderError, to_json, validate};
pub use text::to_json_text;

pub use repliq_types::{
    Body, Field, Kind, Layout, List, MessageType, Ref, Shape, Type, Variant, align_up,
};

/// The version tag of [`Schema`] files.
pub const SCHEMA_FORMAT: &str = "repliq.schema.v1";

/// What a queue stores about its message type in `schema.json`: the name, the fingerprint and
/// the descriptor. See `docs/FORMAT.md`, "Schema file".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Schema {
    /// Always [`SCHEMA_FORMAT`].
    pub format: Cow<'static, str>,
    /// [`Message::NAME`](crate::Message::NAME).
    pub name: Cow<'static, str>,
    /// [`Fingerprint::FINGERPRINT`](crate::Fingerprint::FINGERPRINT), as `0x` and 16 lowercase
    /// hex digits.
    #[serde(with = "hex_u64")]
    pub fingerprint: u64,
    /// The descriptor of the message type.
    pub root: Ref<Type>,
}

impl Schema {
    /// The schema of message type `T`.
    #[must_use]
    pub fn of<T: crate::Message>() -> Schema {
        Schema {
            format: Cow::Borrowed(SCHEMA_FORMAT),
            name: Cow::Borrowed(T::NAME),
            fingerprint: T::FINGERPRINT,
            root: Ref::Static(T::DESCRIPTOR),
        }
    }

    /// The `schema.json` text (pretty-printed JSON and a newline).
    #[must_use]
    pub fn to_json_string(&self) -> String {
        let mut s = serde_json::to_string_pretty(self)
            .unwrap_or_else(|e| unreachable!("a schema always encodes as JSON: {e}"));
        s.push('\n');
        s
    }

    /// Parses `schema.json` and checks it: the format tag, and that the descriptor hashes to the
    /// stored fingerprint.
    ///
    /// # Errors
    ///
    /// [`SchemaError`]: what is wrong.
    pub fn from_json(text: &str) -> std::result::Result<Schema, SchemaError> {
        let schema: Schema =
            serde_json::from_str(text).map_err(|e| SchemaError::Parse(e.to_string()))?;
        if schema.format != SCHEMA_FORMAT {
            return Err(SchemaError::UnknownFormat(schema.format.into_owned()));
        }
        let computed = schema.root.fingerprint();
        if computed != schema.fingerprint {
            return Err(SchemaError::FingerprintMismatch {
                computed,
                stored: schema.fingerprint,
            });
        }
        Ok(schema)
    }
}

/// Why a `schema.json` text was refused by [`Schema::from_json`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// Not JSON, or not the shape of a schema.
    #[error("{0}")]
    Parse(String),
    /// A format tag other than [`SCHEMA_FORMAT`].
    #[error("unknown schema format {0:?} (expected {SCHEMA_FORMAT:?})")]
    UnknownFormat(String),
    /// The descriptor does not hash to the stored fingerprint.
    #[error("the descriptor hashes to {computed:#018x}, but the schema says {stored:#018x}")]
    FingerprintMismatch {
        /// The descriptor's fingerprint.
        computed: u64,
        /// The one the file states.
        stored: u64,
    },
}

mod hex_u64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(x: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{x:#018x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let s = String::deserialize(d)?;
        s.strip_prefix("0x")
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .ok_or_else(|| serde::de::Error::custom(format!("bad fingerprint {s:?}")))
    }
}
