//! Consumer cursors that travel with the frames (`Frame.consumer_cursors`; docs/REPLICATION.md,
//! "Consumer cursors"), so that a durable consumer resumes where it was after a failover.
//!
//! The primary reads its named consumer cursors from the mapped meta file (no system call) each
//! time it sends a replica frames, and attaches them to the last frame of the send when they
//! differ from what that stream sent last. Each position is at most the end of what the stream
//! has sent, so a cursor ahead of the replica is sent again once the records reach it. The
//! replica, after applying the frames and under the same lock, creates each missing cursor and
//! moves it forward to the shipped position, at most its own next sequence number (never back:
//! [`follow`]). Replica cursors (`replica:<node>`) are never shipped nor touched.

use super::grpc::proto::ConsumerCursor;
use crate::journal::cursor;
use crate::journal::meta::Meta;

/// What a primary's stream to one replica sent last.
#[derive(Debug, Default)]
pub(super) struct SentCursors {
    last: Option<Vec<ConsumerCursor>>,
}

impl SentCursors {
    /// The cursors to attach to a send after which the replica holds every record before
    /// `sent_to`, each at most `sent_to`; `None` if this stream sent the same already. Allocates
    /// only when they changed.
    pub(super) fn changed(&mut self, meta: &Meta, sent_to: u64) -> Option<Vec<ConsumerCursor>> {
        if let Some(last) = &self.last {
            let mut same = true;
            let mut i = 0;
            cursor::each_consumer(meta, |name, next| {
                same &= last
                    .get(i)
                    .is_some_and(|c| c.name.as_bytes() == name && c.next_seq == next.min(sent_to));
                i += 1;
            });
            if same && i == last.len() {
                return None;
            }
        }
        let mut now = Vec::new();
        cursor::each_consumer(meta, |name, next| {
            now.push(ConsumerCursor {
                name: String::from_utf8_lossy(name).into_owned(),
                next_seq: next.min(sent_to),
            });
        });
        self.last = Some(now.clone());
        Some(now)
    }
}

/// Moves this replica's cursors to the ones its primary shipped: each is created if missing and
/// moved forward (never back) to its position, at most `held` (the replica's next sequence
/// number). Never back: a cursor of the same name this node kept from a term of its own as
/// primary, or moved by a local consumer of its replica, may be ahead of the primary's copy, and
/// moving it back would deliver again what that consumer acknowledged; a consumer's cursor on
/// the primary only moves forward itself (a move-aside moves this node's cursors back on its
/// own). A cursor this replica cannot set (a name no consumer may have, every slot used) is
/// logged and skipped: the records are good, and that consumer then starts over after a
/// failover, as before cursors were shipped. Returns how many cursors were created or moved.
pub(super) fn follow(meta: &Meta, shipped: &[ConsumerCursor], held: u64, queue: &str) -> usize {
    let mut moved = 0;
    for c in shipped {
        let next = c.next_seq.min(held);
        if let Some((slot, _)) = cursor::find_gen(meta, &c.name)
            && meta.load_cursor(slot) >= next
        {
            continue;
        }
        match cursor::raise_consumer(meta, &c.name, next) {
            Ok(true) => moved += 1,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(queue = %queue, consumer = %c.name, next_seq = next, error = %e, "cannot set a consumer cursor the primary shipped")
            }
        }
    }
    moved
}

#[cfg(test)]
mod tests;
