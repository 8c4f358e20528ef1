//! [`Timestamp`], the message field type for points in time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time: nanoseconds since the Unix epoch (UTC), signed so that times before 1970
/// can be represented. Covers the years 1677 to 2262.
///
/// It is itself a message type (so it can be a field, or sent alone), and the schema type
/// `timestamp` of `repliq-codegen` maps to it.
#[crate::message(name = "repliq.Timestamp")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp {
    /// Nanoseconds since 1970-01-01T00:00:00Z.
    pub nanos: i64,
}

impl Timestamp {
    /// The timestamp `nanos` nanoseconds after the Unix epoch.
    #[must_use]
    pub const fn from_nanos(nanos: i64) -> Self {
        Timestamp { nanos }
    }

    /// Nanoseconds since the Unix epoch.
    #[must_use]
    pub const fn nanos(self) -> i64 {
        self.nanos
    }

    /// The current time of the system clock.
    #[must_use]
    pub fn now() -> Self {
        Self::from(SystemTime::now())
    }
}

impl From<SystemTime> for Timestamp {
    /// Saturates at the ends of the representable range.
    fn from(t: SystemTime) -> Self {
        let nanos = match t.duration_since(UNIX_EPOCH) {
            Ok(after) => i64::try_from(after.as_nanos()).unwrap_or(i64::MAX),
            Err(before) => i64::try_from(before.duration().as_nanos())
                .map(|n| -n)
                .unwrap_or(i64::MIN),
        };
        Timestamp { nanos }
    }
}

impl From<Timestamp> for SystemTime {
    fn from(t: Timestamp) -> Self {
        let magnitude = Duration::from_nanos(t.nanos.unsigned_abs());
        if t.nanos >= 0 {
            UNIX_EPOCH + magnitude
        } else {
            UNIX_EPOCH - magnitude
        }
    }
}

impl ArchivedTimestamp {
    /// Nanoseconds since the Unix epoch, read from the archived form.
    #[must_use]
    pub fn nanos(&self) -> i64 {
        self.nanos.to_native()
    }
}
