//! Named consumer cursors in the meta file.
//!
//! The meta file has [`CURSOR_SLOTS`] slots of 64 bytes: a state word, the cursor (the next
//! sequence number to consume), flags and the name. A name is placed by open addressing (FNV-1a
//! hash, linear probing), so concurrent registrations of the same name in different processes
//! probe the same slots and meet.
//!
//! The state word: bits 32..40 the state, bits 40..64 the slot's **generation** (how many times
//! it was reused), bits 0..32 a CLOCK_MONOTONIC millisecond stamp (when it was claimed, or
//! removed). A version-1 meta file has generation 0 everywhere and no stamps on removed slots.
//!
//! ```text
//!   FREE ──CAS──▶ CLAIMING(g, t) ──CAS──▶ ACTIVE(g) ──remove CAS──▶ REMOVED(g, t)
//!                      │                                               │ reuse CAS, after
//!                      └──retire CAS──▶ RETIRED (never reused)         ▼ reuse delay
//!                                                                 CLAIMING(g + 1, t')
//! ```
//!
//! **Claims.** A slot is claimed by the compare-and-swap of exactly one registrant (from FREE,
//! or from a REMOVED slot of generation `g` to CLAIMING of `g + 1`), so the claim word is unique
//! to its claimer. The claimer writes name, flags and cursor while CLAIMING and publishes them by
//! the CAS CLAIMING → ACTIVE (release). A claim older than [`CLAIM_TIMEOUT_MS`] (its claimer
//! died, or is stalled) is **retired**, never taken over: the plain stores of a stalled claimer
//! cannot be fenced, so they must only ever land in a slot no one else will own, and a retired
//! slot is never reused. Its publication CAS fails and it registers again. The price is one slot
//! per registration killed inside its few microseconds.
//!
//! **Reuse** (meta format version 2 only; version-1 queues keep their tombstones, as every
//! process on them may be an older build that does not know generations). A removed cursor's
//! slot is reused by a later registration once the reuse delay has passed since the removal
//! ([`reuse_delay_ms`]: five reservation lease timeouts, one second by default), with its
//! generation incremented. A handle holds (slot, generation) and checks the
//! state word against them before every read and every move of its cursor (one load of the
//! cache line that holds the cursor anyway): after a removal it registers its name again rather
//! than touch a slot that may have been reused. The check and the cursor's compare-and-swap are
//! two instructions, not one: a holder stalled between them for longer than the reuse delay
//! *and* meeting the new owner's cursor at exactly its own expected value could move that cursor
//! by one. The delay makes that window a second of stall against a compare-and-swap that takes
//! nanoseconds.
//!
//! **One slot per name.** A registration first looks for the name along its whole probe
//! sequence (waiting for slots being claimed), then claims the first claimable slot. Two
//! registrations of the same name can still end in two slots when a reusable slot appears
//! between their scans; so after publishing, a registrant scans again and the slot earliest in
//! the probe sequence wins: a later duplicate is removed (by whichever registrant sees it), and
//! its holders, checking their generation, register again and find the winner.
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
/// A retired claim (meta version 2): a tombstone that is never reused.
const RETIRED: u64 = 4;
/// How long a half-registered slot may stay CLAIMING before another process retires it.
pub(crate) const CLAIM_TIMEOUT_MS: u32 = 1000;
/// How long after its removal a slot may be reused (meta version 2), in multiples of the
/// queue's lease timeout (default 200 ms: one second).
pub(crate) const REUSE_DELAY_LEASES: u32 = 5;

/// How long after its removal a slot of this queue may be reused.
pub(crate) fn reuse_delay_ms(meta: &Meta) -> u32 {
    meta.config.lease_ms.saturating_mul(REUSE_DELAY_LEASES)
}
const GEN_MASK: u32 = 0x00ff_ffff;

fn state_of(s: u64) -> u64 {
    (s >> 32) & 0xff
}

/// The generation of a state word.
pub(crate) fn gen_of(s: u64) -> u32 {
    (s >> 40) as u32
}

fn state_word(state: u64, generation: u32, stamp: u32) -> u64 {
    (u64::from(generation & GEN_MASK) << 40) | (state << 32) | u64::from(stamp)
}

/// The state word of an ACTIVE slot of generation `generation`.
pub(crate) fn active_word(generation: u32) -> u64 {
    state_word(ACTIVE, generation, 0)
}

fn is_active(s: u64) -> bool {
    state_of(s) == ACTIVE && s as u32 == 0
}

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
#[cfg(test)]
pub(crate) fn register(meta: &Meta, name: &str, start: impl Fn() -> Result<u64>) -> Result<usize> {
    register_gen(meta, name, start).map(|(slot, _)| slot)
}

/// [`register`], with the slot's generation (what a holder checks before using the slot).
pub(crate) fn register_gen(
    meta: &Meta,
    name: &str,
    start: impl Fn() -> Result<u64>,
) -> Result<(usize, u32)> {
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
    .map(|(slot, _)| slot)
}

fn corrupt_slot(meta: &Meta, slot: usize, s: u64) -> QueueError {
    QueueError::Corrupt {
        path: meta.path.clone(),
        offset: (super::format::M_CURSORS + slot * super::format::CURSOR_ENTRY) as u64,
        reason: format!("invalid cursor slot state {s:#018x}"),
    }
}

/// Waits while `slot` is CLAIMING (bounded: a claim older than [`CLAIM_TIMEOUT_MS`] is retired)
/// and returns the state word it settled in.
fn settled(meta: &Meta, slot: usize) -> u64 {
    let state = meta.cursor_state(slot);
    let mut spins = 0u32;
    loop {
        let s = state.load(Ordering::Acquire);
        if state_of(s) != CLAIMING {
            return s;
        }
        if lease_expired(s as u32, monotonic_millis(), CLAIM_TIMEOUT_MS) {
            // Never take a stale claim over: its claimer may only be stalled and still write
            // its name and cursor into this slot. Retire the slot (a tombstone, never reused)
            // and probe on; the claimer's publication then fails and it registers again.
            let retired = if meta.reuses_slots() {
                state_word(RETIRED, gen_of(s), 0)
            } else {
                REMOVED << 32
            };
            let _ = state.compare_exchange(s, retired, Ordering::AcqRel, Ordering::Acquire);
            continue;
        }
        spins += 1;
        if spins > 100 {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
}

/// The active slots named `name` along its probe sequence, in probe order (waiting for slots
/// being claimed), up to the first FREE slot.
fn active_named(meta: &Meta, name: &[u8]) -> Result<Vec<(usize, u32)>> {
    let h = hash(name);
    let mut found = Vec::new();
    for i in 0..CURSOR_SLOTS {
        let slot = (h + i) % CURSOR_SLOTS;
        let s = settled(meta, slot);
        match state_of(s) {
            FREE if s == 0 => break,
            ACTIVE if is_active(s) => {
                if named(meta, slot, s, name) {
                    found.push((slot, gen_of(s)));
                }
            }
            REMOVED | RETIRED => {}
            _ => return Err(corrupt_slot(meta, slot, s)),
        }
    }
    Ok(found)
}

fn register_flagged(
    meta: &Meta,
    name: &str,
    flags: u32,
    start: impl Fn() -> Result<u64>,
) -> Result<(usize, u32)> {
    let bytes = name.as_bytes();
    let h = hash(bytes);
    let reuse = meta.reuses_slots();
    'restart: loop {
        if let Some(&first) = active_named(meta, bytes)?.first() {
            return Ok(first);
        }
        for i in 0..CURSOR_SLOTS {
            let slot = (h + i) % CURSOR_SLOTS;
            let s = settled(meta, slot);
            let claim = match state_of(s) {
                FREE if s == 0 => try_claim(meta, slot, monotonic_millis()),
                ACTIVE if is_active(s) => {
                    if named(meta, slot, s, bytes) {
                        return Ok((slot, gen_of(s)));
                    }
                    continue;
                }
                REMOVED
                    if reuse
                        && lease_expired(s as u32, monotonic_millis(), reuse_delay_ms(meta)) =>
                {
                    try_reuse(meta, slot, s, monotonic_millis())
                }
                REMOVED | RETIRED => continue,
                _ => return Err(corrupt_slot(meta, slot, s)),
            };
            // Lost the claim race (the slot changed under us): look at everything again.
            let Some(claim) = claim else {
                continue 'restart;
            };
            if !publish_flagged(meta, slot, claim, bytes, flags, &start)? {
                continue 'restart;
            }
            let mine = (slot, gen_of(claim));
            if !reuse {
                return Ok(mine);
            }
            // One slot per name: the earliest in the probe sequence wins; later ones are
            // removed (whoever sees them first), their holders register again and find it.
            let all = active_named(meta, bytes)?;
            let winner = all.first().copied().unwrap_or(mine);
            for &(other, generation) in &all[1..] {
                remove_slot(meta, other, generation);
            }
            return Ok(winner);
        }
        let waiting = (0..CURSOR_SLOTS)
            .filter(|&slot| state_of(meta.cursor_state(slot).load(Ordering::Acquire)) == REMOVED)
            .count();
        let soon = if reuse && waiting > 0 {
            format!(
                "; {waiting} of them were removed less than {} ms ago and can be reused then",
                reuse_delay_ms(meta)
            )
        } else {
            String::new()
        };
        return Err(QueueError::InvalidConfig(format!(
            "cannot register consumer {name:?}: all {CURSOR_SLOTS} consumer slots of {} are used \
             (remove unused ones with `repliq consumers {} --remove NAME`){soon}",
            meta.path.display(),
            meta.path
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        )));
    }
}

/// `true` if the slot whose state word was `s` (ACTIVE) is named `name`, and still was after
/// the name was read (so the name belongs to that generation).
fn named(meta: &Meta, slot: usize, s: u64, name: &[u8]) -> bool {
    meta.cursor_name(slot) == name && meta.cursor_state(slot).load(Ordering::Acquire) == s
}

/// Reuses a REMOVED slot whose state word is `removed`: → CLAIMING(generation + 1, stamp). The
/// claim word on success.
fn try_reuse(meta: &Meta, slot: usize, removed: u64, stamp: u32) -> Option<u64> {
    let claim = state_word(CLAIMING, gen_of(removed).wrapping_add(1) & GEN_MASK, stamp);
    meta.cursor_state(slot)
        .compare_exchange(removed, claim, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
        .then_some(claim)
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
        .compare_exchange(
            claim,
            active_word(gen_of(claim)),
            Ordering::AcqRel,
            Ordering::Acquire,
        )
        .is_ok())
}

/// The slot of an existing cursor `name` (the earliest along its probe sequence).
#[cfg(test)]
pub(crate) fn find(meta: &Meta, name: &str) -> Option<usize> {
    find_gen(meta, name).map(|(slot, _)| slot)
}

/// [`find`], with the slot's generation.
pub(crate) fn find_gen(meta: &Meta, name: &str) -> Option<(usize, u32)> {
    let bytes = name.as_bytes();
    let h = hash(bytes);
    for i in 0..CURSOR_SLOTS {
        let slot = (h + i) % CURSOR_SLOTS;
        let s = meta.cursor_state(slot).load(Ordering::Acquire);
        if s == 0 {
            return None;
        }
        if is_active(s) && named(meta, slot, s, bytes) {
            return Some((slot, gen_of(s)));
        }
    }
    None
}

/// `true` if `slot` is still the ACTIVE slot of generation `generation` a holder registered.
#[inline]
pub(crate) fn holds(meta: &Meta, slot: usize, generation: u32) -> bool {
    meta.cursor_state(slot).load(Ordering::Acquire) == active_word(generation)
}

/// Removes the ACTIVE slot `slot` of generation `generation`. `true` if this call removed it.
fn remove_slot(meta: &Meta, slot: usize, generation: u32) -> bool {
    let removed = if meta.reuses_slots() {
        state_word(REMOVED, generation, monotonic_millis())
    } else {
        REMOVED << 32
    };
    meta.cursor_state(slot)
        .compare_exchange(
            active_word(generation),
            removed,
            Ordering::AcqRel,
            Ordering::Acquire,
        )
        .is_ok()
}

/// Removes cursor `name` (it no longer holds back capacity or retention). `true` if it existed.
/// Its slot is reused after the reuse delay ([`reuse_delay_ms`]; meta format version 2).
pub(crate) fn remove(meta: &Meta, name: &str) -> bool {
    find_gen(meta, name).is_some_and(|(slot, generation)| remove_slot(meta, slot, generation))
}

/// What a slot holds, for `repliq consumers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SlotUse {
    /// Never used.
    Free,
    /// A registration in progress (or one that died inside it).
    Claiming,
    /// A cursor: name, next sequence (for replica cursors, the last one held), flags.
    Active {
        /// The cursor's name.
        name: String,
        /// Its position.
        next: u64,
        /// Its flags.
        flags: u32,
    },
    /// A removed cursor: reusable after the reuse delay (meta version 2).
    Removed,
    /// A retired claim: never reused.
    Retired,
}

/// Every slot: (slot, generation, use).
pub(crate) fn slots(meta: &Meta) -> Vec<(usize, u32, SlotUse)> {
    (0..CURSOR_SLOTS)
        .map(|slot| {
            let s = meta.cursor_state(slot).load(Ordering::Acquire);
            let what = match state_of(s) {
                FREE if s == 0 => SlotUse::Free,
                CLAIMING => SlotUse::Claiming,
                ACTIVE if is_active(s) => SlotUse::Active {
                    name: String::from_utf8_lossy(meta.cursor_name(slot).as_bytes()).into_owned(),
                    next: meta.load_cursor(slot),
                    flags: meta.cursor_flags(slot),
                },
                REMOVED if meta.reuses_slots() || s == REMOVED << 32 => SlotUse::Removed,
                _ => SlotUse::Retired,
            };
            (slot, gen_of(s), what)
        })
        .collect()
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
        .filter(|&slot| is_active(meta.cursor_state(slot).load(Ordering::Acquire)))
        .map(|slot| {
            let pos = meta.load_cursor(slot);
            let next = if meta.cursor_flags(slot) & FLAG_REPLICA != 0 && pos != u64::MAX {
                pos + 1
            } else {
                pos
            };
            (
                String::from_utf8_lossy(meta.cursor_name(slot).as_bytes()).into_owned(),
                next,
            )
        })
        .collect()
}

/// Calls `f` with (name, next sequence to consume) of every active consumer cursor (replica
/// cursors and released ones left out), in slot order. Reads the mapped meta file only, and
/// allocates nothing: what a primary ships to its replicas with the frames
/// (`replication::consumer_cursors`) on every send.
#[cfg_attr(not(feature = "replication"), allow(dead_code))]
pub(crate) fn each_consumer(meta: &Meta, mut f: impl FnMut(&[u8], u64)) {
    for slot in 0..CURSOR_SLOTS {
        let s = meta.cursor_state(slot).load(Ordering::Acquire);
        if !is_active(s) || meta.cursor_flags(slot) & FLAG_REPLICA != 0 {
            continue;
        }
        let next = meta.load_cursor(slot);
        let name = meta.cursor_name(slot);
        // The name belongs to this generation only if the slot did not change meanwhile.
        if next == RELEASED || meta.cursor_state(slot).load(Ordering::Acquire) != s {
            continue;
        }
        f(name.as_bytes(), next);
    }
}

/// Moves consumer cursor `name` forward to `next` (never back), registering it at `next` if it
/// does not exist: a replica following its primary's cursor (docs/REPLICATION.md, "Consumer
/// cursors"). `true` if the cursor was created or moved. A replica cursor name (`replica:*`)
/// or an invalid one is an error naming it; a replica cursor is never touched.
#[cfg_attr(not(feature = "replication"), allow(dead_code))]
pub(crate) fn raise_consumer(meta: &Meta, name: &str, next: u64) -> Result<bool> {
    check_name(name)?;
    loop {
        let created = std::cell::Cell::new(false);
        let (slot, generation) = register_flagged(meta, name, FLAG_DURABLE, || {
            created.set(true);
            Ok(next)
        })?;
        if meta.cursor_flags(slot) & FLAG_REPLICA != 0 {
            return Err(QueueError::InvalidConfig(format!(
                "consumer name {name:?} is a replica cursor of {}",
                meta.path.display()
            )));
        }
        // Removed (and perhaps reused) since the registration: register again (the check and
        // the move are two instructions, as for every holder: see "Reuse" above).
        if holds(meta, slot, generation) {
            let before = meta.cursor_next(slot).fetch_max(next, Ordering::AcqRel);
            return Ok(created.get() || before < next);
        }
    }
}

/// The position of the slowest active cursor, replica cursors included, if any: what retention
/// keeps.
pub(crate) fn min_position(meta: &Meta) -> Option<u64> {
    (0..CURSOR_SLOTS)
        .filter(|&slot| is_active(meta.cursor_state(slot).load(Ordering::Acquire)))
        .map(|slot| meta.load_cursor(slot))
        .min()
}

/// The position of the slowest active consumer cursor (replica cursors left out), if any: what
/// bounds the backlog (capacity). A stopped replica must not stop producers; its bound is the
/// replication task's (the replica is declared lost).
pub(crate) fn min_consumer_position(meta: &Meta) -> Option<u64> {
    (0..CURSOR_SLOTS)
        .filter(|&slot| is_active(meta.cursor_state(slot).load(Ordering::Acquire)))
        .filter(|&slot| meta.cursor_flags(slot) & FLAG_REPLICA == 0)
        .map(|slot| meta.load_cursor(slot))
        .min()
}

/// Moves every active consumer cursor (replica cursors left out) that is past `seq` back to
/// `seq`, and returns how many moved. For a failover: the records from `seq` on were moved aside
/// and those sequence numbers will hold the new primary's records, which these consumers have
/// not read (without it, a consumer that had read the old primary's unacknowledged record at
/// `seq` skipped the new primary's acknowledged one there: found by the fault schedules'
/// consumers, docs/CHECKER.md). A consumer between reading a moved record and its claim's
/// compare-and-swap at this instant still claims it (a window of one record, nanoseconds wide).
pub(crate) fn rewind_consumers(meta: &Meta, seq: u64) -> usize {
    let mut moved = 0;
    for slot in 0..CURSOR_SLOTS {
        if !is_active(meta.cursor_state(slot).load(Ordering::Acquire))
            || meta.cursor_flags(slot) & FLAG_REPLICA != 0
        {
            continue;
        }
        if meta.cursor_next(slot).fetch_min(seq, Ordering::AcqRel) > seq {
            moved += 1;
        }
    }
    moved
}

/// The name of the slowest active consumer cursor (replica cursors left out), for the error
/// that says who holds the backlog at capacity.
pub(crate) fn slowest_consumer(meta: &Meta) -> Option<String> {
    (0..CURSOR_SLOTS)
        .filter(|&slot| is_active(meta.cursor_state(slot).load(Ordering::Acquire)))
        .filter(|&slot| meta.cursor_flags(slot) & FLAG_REPLICA == 0)
        .min_by_key(|&slot| meta.load_cursor(slot))
        .map(|slot| String::from_utf8_lossy(meta.cursor_name(slot).as_bytes()).into_owned())
}

/// Checks one slot's state word and, for an active slot, its name length (for `verify`).
pub(crate) fn check_slot(meta: &Meta, slot: usize) -> std::result::Result<(), String> {
    let s = meta.cursor_state(slot).load(Ordering::Acquire);
    let v2 = meta.reuses_slots();
    match state_of(s) {
        FREE if s == 0 => Ok(()),
        CLAIMING if v2 || gen_of(s) == 0 => Ok(()),
        ACTIVE if is_active(s) && (v2 || gen_of(s) == 0) => {
            let len = meta.cursor_name_len(slot);
            if (1..=MAX_CONSUMER_NAME).contains(&len) {
                Ok(())
            } else {
                Err(format!("active with name length {len}"))
            }
        }
        REMOVED if s == REMOVED << 32 || v2 => Ok(()),
        RETIRED if v2 && s as u32 == 0 => Ok(()),
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
