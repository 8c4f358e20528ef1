//! Named consumer cursors in the meta file.
//!
//! The meta file has [`CURSOR_SLOTS`] slots of 64 bytes: a state word, the cursor (the next
//! sequence number to consume), flags and the name. A name is placed by open addressing (FNV-1a
//! hash, linear probing), so concurrent registrations of the same name in different processes
//! probe the same slots and meet:
//!
//! ```text
//!   FREE ──CAS──▶ CLAIMING(stamp) ──CAS──▶ ACTIVE ──CAS──▶ REMOVED (tombstone, never reused)
//! ```
//!
//! A slot leaves FREE once, by the compare-and-swap of exactly one claimer, and never returns to
//! FREE or CLAIMING; so the claim word is unique to its claimer. The claimer writes name, flags
//! and cursor while CLAIMING and publishes them by the CAS CLAIMING → ACTIVE (release). A claim
//! older than [`CLAIM_TIMEOUT_MS`] (its claimer died, or is stalled) is **retired**, never taken
//! over: CLAIMING → REMOVED by CAS, and the registration probes on to the next slot. The plain
//! stores of a stalled claimer cannot be fenced, so they must only ever land in a slot that no
//! one else will own: its own claimed slot, which either it makes ACTIVE or is retired for good
//! (its late stores then hit a tombstone that nobody reads). Its publication CAS fails after a
//! retirement, and it registers again. The price is one slot per dead registration.
//!
//! Consuming is a compare-and-swap of the cursor from `n` to `n + 1` *after* the consumer has
//! what it needs from record `n`: handles sharing a name each get a message exactly once while
//! nothing crashes; a consumer that dies before its CAS leaves the message for the others
//! (at-least-once across crashes).

use std::sync::atomic::Ordering;

use super::format::{CURSOR_SLOTS, MAX_CONSUMER_NAME};
use super::header::lease_expired;
use super::meta::Meta;
use crate::raw::clock::monotonic_millis;
use crate::sync::Word;
use crate::{QueueError, Result};

const FREE: u64 = 0;
const CLAIMING: u64 = 1;
const ACTIVE: u64 = 2;
const REMOVED: u64 = 3;
/// How long a half-registered slot may stay CLAIMING before another process retires it.
pub(crate) const CLAIM_TIMEOUT_MS: u32 = 1000;
/// Flag bit: the cursor holds back retention and capacity.
pub(crate) const FLAG_DURABLE: u32 = 1;
/// Flag bit: the cursor is a replica's position on its primary (`replica:<node>`, moved by the
/// replication task): it holds back retention only, never a producer (capacity).
pub(crate) const FLAG_REPLICA: u32 = 2;
/// Names starting with this are replica cursors, reserved for replication.
pub(crate) const REPLICA_PREFIX: &str = "replica:";
/// The position of a replica cursor whose replica was declared lost: it holds back nothing.
#[cfg_attr(not(feature = "replication"), allow(dead_code))]
pub(crate) const RELEASED: u64 = u64::MAX;

fn hash(name: &[u8]) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in name {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % CURSOR_SLOTS as u64) as usize
}

pub(crate) fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_CONSUMER_NAME {
        return Err(QueueError::InvalidConfig(format!(
            "consumer name {name:?} must be 1 to {MAX_CONSUMER_NAME} bytes long"
        )));
    }
    if name.starts_with(REPLICA_PREFIX) {
        return Err(QueueError::InvalidConfig(format!(
            "consumer name {name:?}: names starting with {REPLICA_PREFIX:?} are reserved for \
             replica cursors"
        )));
    }
    Ok(())
}

/// The name of the cursor that holds replica `node`'s position on its primary:
/// `replica:<node>`, or, for a node name too long for a slot, its first 22 bytes (on a character
/// boundary), `~` and 8 hex digits of the name's FNV-1a hash.
#[cfg_attr(not(feature = "replication"), allow(dead_code))]
pub(crate) fn replica_name(node: &str) -> String {
    let full = format!("{REPLICA_PREFIX}{node}");
    if full.len() <= MAX_CONSUMER_NAME && !node.is_empty() {
        return full;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in node.as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let mut cut = node.len().min(22);
    while !node.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{REPLICA_PREFIX}{}~{:08x}", &node[..cut], h as u32)
}

/// Finds the slot of consumer cursor `name`, registering it at `start` if it does not exist.
pub(crate) fn register(meta: &Meta, name: &str, start: impl Fn() -> Result<u64>) -> Result<usize> {
    check_name(name)?;
    register_flagged(meta, name, FLAG_DURABLE, start)
}

/// Finds the slot of replica `node`'s cursor, registering it at `start` if it does not exist.
#[cfg_attr(not(feature = "replication"), allow(dead_code))]
pub(crate) fn register_replica(
    meta: &Meta,
    node: &str,
    start: impl Fn() -> Result<u64>,
) -> Result<usize> {
    register_flagged(
        meta,
        &replica_name(node),
        FLAG_DURABLE | FLAG_REPLICA,
        start,
    )
}

fn register_flagged(
    meta: &Meta,
    name: &str,
    flags: u32,
    start: impl Fn() -> Result<u64>,
) -> Result<usize> {
    let bytes = name.as_bytes();
    let h = hash(bytes);
    'restart: loop {
        for i in 0..CURSOR_SLOTS {
            let slot = (h + i) % CURSOR_SLOTS;
            let state = meta.cursor_state(slot);
            let mut spins = 0u32;
            loop {
                let s = state.load(Ordering::Acquire);
                match s >> 32 {
                    FREE if s == 0 => {
                        if let Some(claim) = try_claim(meta, slot, monotonic_millis()) {
                            if publish_flagged(meta, slot, claim, bytes, flags, &start)? {
                                return Ok(slot);
                            }
                            continue 'restart;
                        }
                    }
                    CLAIMING => {
                        if lease_expired(s as u32, monotonic_millis(), CLAIM_TIMEOUT_MS) {
                            // Never take a stale claim over: its claimer may only be stalled and
                            // still write its name and cursor into this slot. Retire the slot
                            // (a tombstone, never reused) and probe on; the claimer's
                            // publication then fails and it registers again elsewhere.
                            if state
                                .compare_exchange(
                                    s,
                                    REMOVED << 32,
                                    Ordering::AcqRel,
                                    Ordering::Acquire,
                                )
                                .is_ok()
                            {
                                break;
                            }
                        } else {
                            spins += 1;
                            if spins > 100 {
                                std::thread::yield_now();
                            }
                        }
                    }
                    ACTIVE if s == ACTIVE << 32 => {
                        if meta.cursor_name(slot) == bytes {
                            return Ok(slot);
                        }
                        break;
                    }
                    REMOVED if s == REMOVED << 32 => break,
                    _ => {
                        return Err(QueueError::Corrupt {
                            path: meta.path.clone(),
                            offset: (super::format::M_CURSORS + slot * super::format::CURSOR_ENTRY)
                                as u64,
                            reason: format!("invalid cursor slot state {s:#018x}"),
                        });
                    }
                }
            }
        }
        return Err(QueueError::InvalidConfig(format!(
            "cannot register consumer {name:?}: all {CURSOR_SLOTS} consumer slots of {} are used",
            meta.path.display()
        )));
    }
}

/// Claims a FREE slot: FREE → CLAIMING(stamp). The claim word on success.
pub(crate) fn try_claim(meta: &Meta, slot: usize, stamp: u32) -> Option<u64> {
    let claim = (CLAIMING << 32) | u64::from(stamp);
    meta.cursor_state(slot)
        .compare_exchange(0, claim, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
        .then_some(claim)
}

#[cfg(test)]
pub(crate) fn publish(
    meta: &Meta,
    slot: usize,
    claim: u64,
    name: &[u8],
    start: &impl Fn() -> Result<u64>,
) -> Result<bool> {
    publish_flagged(meta, slot, claim, name, FLAG_DURABLE, start)
}

fn publish_flagged(
    meta: &Meta,
    slot: usize,
    claim: u64,
    name: &[u8],
    flags: u32,
    start: &impl Fn() -> Result<u64>,
) -> Result<bool> {
    meta.write_cursor_name(slot, name, flags);
    meta.cursor_next(slot).store(start()?, Ordering::Release);
    Ok(meta
        .cursor_state(slot)
        .compare_exchange(claim, ACTIVE << 32, Ordering::AcqRel, Ordering::Acquire)
        .is_ok())
}

/// The slot of an existing cursor `name`.
pub(crate) fn find(meta: &Meta, name: &str) -> Option<usize> {
    let bytes = name.as_bytes();
    let h = hash(bytes);
    for i in 0..CURSOR_SLOTS {
        let slot = (h + i) % CURSOR_SLOTS;
        let s = meta.cursor_state(slot).load(Ordering::Acquire);
        if s == 0 {
            return None;
        }
        if s == ACTIVE << 32 && meta.cursor_name(slot) == bytes {
            return Some(slot);
        }
    }
    None
}

/// Removes cursor `name` (it no longer holds back capacity or retention). `true` if it existed.
pub(crate) fn remove(meta: &Meta, name: &str) -> bool {
    find(meta, name).is_some_and(|slot| {
        meta.cursor_state(slot)
            .compare_exchange(
                ACTIVE << 32,
                REMOVED << 32,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    })
}

/// All active cursors: (name, next sequence to consume).
///
/// A replica cursor stores the *last* record its replica holds (so that retention keeps the
/// segment holding it, whose END marker the replica may still lack: `replication::
/// replica_cursors`); here it is reported as the next record the replica needs, like any other
/// cursor, so that a replica holding everything has a backlog of 0. A released replica cursor
/// ([`RELEASED`]) is reported as it is.
pub(crate) fn list(meta: &Meta) -> Vec<(String, u64)> {
    (0..CURSOR_SLOTS)
        .filter(|&slot| meta.cursor_state(slot).load(Ordering::Acquire) == ACTIVE << 32)
        .map(|slot| {
            let pos = meta.load_cursor(slot);
            let next = if meta.cursor_flags(slot) & FLAG_REPLICA != 0 && pos != u64::MAX {
                pos + 1
            } else {
                pos
            };
            (
                String::from_utf8_lossy(meta.cursor_name(slot)).into_owned(),
                next,
            )
        })
        .collect()
}

/// The position of the slowest active cursor, replica cursors included, if any: what retention
/// keeps.
pub(crate) fn min_position(meta: &Meta) -> Option<u64> {
    (0..CURSOR_SLOTS)
        .filter(|&slot| meta.cursor_state(slot).load(Ordering::Acquire) == ACTIVE << 32)
        .map(|slot| meta.load_cursor(slot))
        .min()
}

/// The position of the slowest active consumer cursor (replica cursors left out), if any: what
/// bounds the backlog (capacity). A stopped replica must not stop producers; its bound is the
/// replication task's (the replica is declared lost).
pub(crate) fn min_consumer_position(meta: &Meta) -> Option<u64> {
    (0..CURSOR_SLOTS)
        .filter(|&slot| meta.cursor_state(slot).load(Ordering::Acquire) == ACTIVE << 32)
        .filter(|&slot| meta.cursor_flags(slot) & FLAG_REPLICA == 0)
        .map(|slot| meta.load_cursor(slot))
        .min()
}

/// The name of the slowest active consumer cursor (replica cursors left out), for the error
/// that says who holds the backlog at capacity.
pub(crate) fn slowest_consumer(meta: &Meta) -> Option<String> {
    (0..CURSOR_SLOTS)
        .filter(|&slot| meta.cursor_state(slot).load(Ordering::Acquire) == ACTIVE << 32)
        .filter(|&slot| meta.cursor_flags(slot) & FLAG_REPLICA == 0)
        .min_by_key(|&slot| meta.load_cursor(slot))
        .map(|slot| String::from_utf8_lossy(meta.cursor_name(slot)).into_owned())
}

/// Checks one slot's state word and, for an active slot, its name length (for `verify`).
pub(crate) fn check_slot(meta: &Meta, slot: usize) -> std::result::Result<(), String> {
    let s = meta.cursor_state(slot).load(Ordering::Acquire);
    match s >> 32 {
        FREE if s == 0 => Ok(()),
        CLAIMING => Ok(()),
        ACTIVE if s == ACTIVE << 32 => {
            let len = meta.cursor_name_len(slot);
            if (1..=MAX_CONSUMER_NAME).contains(&len) {
                Ok(())
            } else {
                Err(format!("active with name length {len}"))
            }
        }
        REMOVED if s == REMOVED << 32 => Ok(()),
        _ => Err(format!("invalid state {s:#018x}")),
    }
}

/// Claims record `seq` for a consumer of cursor `word`: CAS `seq` → `seq + 1`.
/// `Err(current)` if another handle of the same name moved the cursor first.
pub(crate) fn claim<W: Word + ?Sized>(word: &W, seq: u64) -> Result<(), u64> {
    word.compare_exchange(seq, seq + 1, Ordering::AcqRel, Ordering::Acquire)
        .map(|_| ())
}

/// Claims records `from..from + count` at once: CAS `from` → `from + count`. `Err(current)` if
/// another handle of the same name moved the cursor first (then none of them is claimed).
pub(crate) fn claim_range<W: Word + ?Sized>(word: &W, from: u64, count: u64) -> Result<(), u64> {
    word.compare_exchange(from, from + count, Ordering::AcqRel, Ordering::Acquire)
        .map(|_| ())
}

/// The home slot of `name` (where its probe starts).
#[cfg(test)]
pub(crate) fn find_home(name: &str) -> usize {
    hash(name.as_bytes())
}
