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
//! The name is written while CLAIMING and published by the CAS to ACTIVE (release). A claim
//! older than [`CLAIM_TIMEOUT_MS`] (its writer died) may be taken over.
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
/// How long a half-registered slot may stay CLAIMING before another process takes it over.
pub(crate) const CLAIM_TIMEOUT_MS: u32 = 1000;
/// Flag bit: the cursor holds back retention and capacity.
pub(crate) const FLAG_DURABLE: u32 = 1;

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
    Ok(())
}

/// Finds the slot of cursor `name`, registering it at `start` if it does not exist.
pub(crate) fn register(meta: &Meta, name: &str, start: impl Fn() -> Result<u64>) -> Result<usize> {
    check_name(name)?;
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
                        let claim = (CLAIMING << 32) | u64::from(monotonic_millis());
                        if state
                            .compare_exchange(0, claim, Ordering::AcqRel, Ordering::Acquire)
                            .is_ok()
                        {
                            if publish(meta, slot, claim, bytes, &start)? {
                                return Ok(slot);
                            }
                            continue 'restart;
                        }
                    }
                    CLAIMING => {
                        if lease_expired(s as u32, monotonic_millis(), CLAIM_TIMEOUT_MS) {
                            let claim = (CLAIMING << 32) | u64::from(monotonic_millis());
                            if state
                                .compare_exchange(s, claim, Ordering::AcqRel, Ordering::Acquire)
                                .is_ok()
                            {
                                if publish(meta, slot, claim, bytes, &start)? {
                                    return Ok(slot);
                                }
                                continue 'restart;
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

fn publish(
    meta: &Meta,
    slot: usize,
    claim: u64,
    name: &[u8],
    start: &impl Fn() -> Result<u64>,
) -> Result<bool> {
    meta.write_cursor_name(slot, name, FLAG_DURABLE);
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
pub(crate) fn list(meta: &Meta) -> Vec<(String, u64)> {
    (0..CURSOR_SLOTS)
        .filter(|&slot| meta.cursor_state(slot).load(Ordering::Acquire) == ACTIVE << 32)
        .map(|slot| {
            (
                String::from_utf8_lossy(meta.cursor_name(slot)).into_owned(),
                meta.load_cursor(slot),
            )
        })
        .collect()
}

/// The position of the slowest active cursor, if any.
pub(crate) fn min_position(meta: &Meta) -> Option<u64> {
    (0..CURSOR_SLOTS)
        .filter(|&slot| meta.cursor_state(slot).load(Ordering::Acquire) == ACTIVE << 32)
        .map(|slot| meta.load_cursor(slot))
        .min()
}

/// Claims record `seq` for a consumer of cursor `word`: CAS `seq` → `seq + 1`.
/// `Err(current)` if another handle of the same name moved the cursor first.
pub(crate) fn claim<W: Word + ?Sized>(word: &W, seq: u64) -> Result<(), u64> {
    word.compare_exchange(seq, seq + 1, Ordering::AcqRel, Ordering::Acquire)
        .map(|_| ())
}
