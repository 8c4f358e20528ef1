//! The replica side of replication.
//!
//! One [`Follower`] per queue on a replica, shared by every stream that reaches it. The
//! invariant it keeps (docs/REPLICATION.md, "Epochs"): **only the newest epoch's stream
//! writes**. A stream begins with a Hello ([`Follower::on_hello`]) that names its epoch; a Hello
//! of an epoch older than the newest this replica has seen is refused, and a Hello of a newer (or
//! the same) epoch takes over: every older stream is superseded, and its frames are refused
//! ([`Follower::on_stream_frame`]) even though they carry an epoch the stream began with. A
//! primary paused through a failover (a long GC pause, a frozen VM, `SIGSTOP`) resumes with its
//! streams still open; its frames then meet this check and its synchronous writers are fenced
//! instead of acknowledged.
//!
//! Which of its records a replica keeps when a newer primary's stream begins is decided by the
//! two epoch histories ([`Lineage`]): everything from the start of the first epoch in the
//! primary's history that is newer than the epoch of the replica's last record is moved aside.

use super::lineage::Lineage;
use super::{FrameHeader, RecordId};

/// Identifies one replication stream to a [`Follower`]: handed out by
/// [`Follower::on_hello`], in increasing order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId(u64);

/// A Hello the follower accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloAccepted {
    /// The stream's identity: pass it with each of its frames.
    pub stream: StreamId,
    /// The Hello begins a newer epoch and this replica holds records from the epoch's first
    /// sequence on, which the new primary never had: move them aside (and store the new epoch)
    /// before subscribing.
    pub move_aside_from: Option<u64>,
    /// The stream this one supersedes, if any: it must end.
    pub superseded: Option<StreamId>,
}

/// The state of one replicated queue on a replica.
#[derive(Debug, Clone)]
pub struct Follower {
    epoch: u64,
    /// The next sequence number this replica needs (all before it are held durably).
    next_seq: u64,
    /// The stream that may write: the last accepted Hello of the newest epoch.
    writer: Option<StreamId>,
    /// The last stream identity handed out.
    streams: u64,
    /// This node was promoted to primary of this epoch: every stream is refused.
    promoted: Option<u64>,
    /// Which epoch wrote which of the records held.
    lineage: Lineage,
}

/// What a replica should do with a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FollowerDecision {
    /// Append `frame.records[skip..]` at their sequence numbers, after moving aside every
    /// record from `move_aside_from` on (if set). Records before `skip` are already held with the
    /// same checksum. Then acknowledge with [`Follower::appended`].
    Append {
        /// Move the local suffix starting at this sequence aside before appending.
        move_aside_from: Option<u64>,
        /// How many leading records of the frame are already held.
        skip: usize,
    },
    /// The frame brings nothing new (a duplicate); acknowledge `durable` again.
    Duplicate {
        /// The next sequence this replica needs.
        durable: u64,
    },
    /// The frame is refused; nothing may be written.
    Refuse(Refusal),
}

/// Why a frame (or a Hello) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A newer stream took over this queue: a newer epoch's, or a reconnect of the same
    /// primary. Only the newest stream writes.
    #[error("stream superseded by a newer one of epoch {epoch}")]
    Superseded {
        /// The epoch this replica follows now.
        epoch: u64,
    },
    /// This node was promoted to primary of `epoch`: it accepts no replication stream of an
    /// epoch up to its own.
    #[error("this node is the primary of epoch {epoch}; frames of epoch {frame} are refused")]
    Promoted {
        /// This node's epoch as primary.
        epoch: u64,
        /// The refused stream's epoch.
        frame: u64,
    },
    /// The frame comes from an older primary term.
    #[error("frame of epoch {frame} refused: this replica already follows epoch {current}")]
    StaleEpoch {
        /// The frame's epoch.
        frame: u64,
        /// The newest epoch this replica has seen.
        current: u64,
    },
    /// The frame starts after the next sequence this replica needs.
    #[error("gap: this replica needs sequence {expected}, the frame starts at {got}")]
    Gap {
        /// The next sequence this replica needs.
        expected: u64,
        /// The frame's first sequence.
        got: u64,
    },
    /// The frame's sequence numbers are not consecutive.
    #[error("malformed frame: sequence {got} follows {previous}")]
    NotConsecutive {
        /// The sequence before the break.
        previous: u64,
        /// The sequence after it.
        got: u64,
    },
    /// The frame holds a record that differs from the one held here, below the point where the
    /// sender's epoch began: the two logs disagree on history both claim to share (corruption).
    #[error(
        "record {seq} differs from the primary's (epoch {epoch}): held crc {held:#010x}, frame crc {frame:#010x}"
    )]
    Diverged {
        /// The sequence number.
        seq: u64,
        /// The frame's epoch.
        epoch: u64,
        /// Checksum of the record held here.
        held: u32,
        /// Checksum of the record in the frame.
        frame: u32,
    },
}

impl Follower {
    /// A follower that has seen `epoch` and holds every record before `next_seq`, written by
    /// the epochs `lineage` names ([`ReplicationState::lineage`](super::ReplicationState::lineage)).
    #[must_use]
    pub fn new(epoch: u64, next_seq: u64, lineage: Lineage) -> Self {
        Follower {
            epoch,
            next_seq,
            writer: None,
            streams: 0,
            promoted: None,
            lineage,
        }
    }

    /// A stream's Hello: it will send frames of `epoch`, which began at `epoch_start`, from a
    /// primary whose epoch history is `primary` (empty from a primary that predates histories:
    /// then `epoch` from `epoch_start` is taken as its only entry). Every record held from the
    /// first epoch in `primary` newer than the epoch of this replica's last record is to be moved
    /// aside ([`HelloAccepted::move_aside_from`]): the primary's records there may differ. From
    /// then on this replica's history is the primary's.
    ///
    /// # Errors
    ///
    /// [`Refusal::StaleEpoch`] if this replica has seen a newer epoch; [`Refusal::Promoted`] if
    /// this node was promoted to an epoch at least as new.
    pub fn on_hello(
        &mut self,
        epoch: u64,
        epoch_start: u64,
        primary: &Lineage,
    ) -> Result<HelloAccepted, Refusal> {
        if let Some(own) = self.promoted {
            if epoch <= own {
                return Err(Refusal::Promoted {
                    epoch: own,
                    frame: epoch,
                });
            }
            // A newer primary took over from this node: it follows again, from what it holds.
            self.promoted = None;
        }
        if epoch < self.epoch {
            return Err(Refusal::StaleEpoch {
                frame: epoch,
                current: self.epoch,
            });
        }
        // A primary that predates histories sends none: its epoch from its start is all that is
        // known of it.
        let known = !primary.is_empty();
        let primary = if known {
            primary.clone()
        } else {
            Lineage::of(epoch, epoch_start)
        };
        // Up to the end of the newest epoch both histories name (usually: the first epoch newer
        // than that of this replica's last record), both hold what the same primaries wrote;
        // from there on the primary's records may differ (an old primary's unreplicated writes,
        // also from terms before the newest, or from a term the primary never had). A primary
        // without a history: the rule from its own epoch's start only.
        let mut move_aside_from = None;
        let from = if known {
            primary.divergence_of(&self.lineage, self.next_seq)
        } else {
            primary
                .divergence_for(self.lineage.last_epoch_below(self.next_seq))
                .filter(|&from| self.next_seq > from)
        };
        if let Some(from) = from {
            move_aside_from = Some(from);
            self.next_seq = from;
        }
        if known {
            self.lineage = primary;
        } else {
            // Keep what is known of the records below the primary's epoch.
            self.lineage.begin(epoch, epoch_start);
        }
        self.epoch = self.epoch.max(epoch);
        self.streams += 1;
        let stream = StreamId(self.streams);
        let superseded = self.writer.replace(stream);
        Ok(HelloAccepted {
            stream,
            move_aside_from,
            superseded,
        })
    }

    /// This node's durable state says it is the primary of `epoch` (a promotion by another
    /// process, e.g. `repliq promote`): from now on every stream of an epoch up to it is refused.
    pub fn on_promoted(&mut self, epoch: u64) {
        self.promoted = Some(self.promoted.unwrap_or(0).max(epoch));
        self.epoch = self.epoch.max(epoch);
        self.writer = None;
    }

    /// Whether `stream` may still write: it is the newest stream and this node was not promoted.
    #[must_use]
    pub fn is_writer(&self, stream: StreamId) -> bool {
        self.promoted.is_none() && self.writer == Some(stream)
    }

    /// Decides what to do with a frame that arrived on `stream`: refused unless `stream` is the
    /// writer (the last accepted Hello of the newest epoch) and the frame carries that epoch;
    /// otherwise as [`on_frame`](Self::on_frame).
    pub fn on_stream_frame(
        &mut self,
        stream: StreamId,
        frame: &FrameHeader,
        held: impl Fn(u64) -> Option<u32>,
    ) -> FollowerDecision {
        if let Some(own) = self.promoted {
            return FollowerDecision::Refuse(Refusal::Promoted {
                epoch: own,
                frame: frame.epoch,
            });
        }
        if frame.epoch < self.epoch {
            return FollowerDecision::Refuse(Refusal::StaleEpoch {
                frame: frame.epoch,
                current: self.epoch,
            });
        }
        if self.writer != Some(stream) {
            return FollowerDecision::Refuse(Refusal::Superseded { epoch: self.epoch });
        }
        self.on_frame(frame, held)
    }

    /// A full resync: the primary of `epoch` holds nothing before `segment_first_seq`, which
    /// this replica needs; its segments were dropped and it starts again there.
    pub fn on_resync(&mut self, epoch: u64, segment_first_seq: u64) {
        self.epoch = self.epoch.max(epoch);
        self.next_seq = segment_first_seq;
    }

    /// The newest epoch this follower has seen.
    #[must_use]
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Which epoch wrote which of the records held (and of those the stream will bring): what
    /// the replica stores with the epoch.
    #[must_use]
    pub fn lineage(&self) -> &Lineage {
        &self.lineage
    }

    /// The next sequence this replica needs: what it subscribes and acknowledges with.
    #[must_use]
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Decides what to do with a frame. `held(seq)` returns the checksum of the record this
    /// replica holds at `seq`, if any (only asked for sequences below [`next_seq`](Self::next_seq)).
    pub fn on_frame(
        &mut self,
        frame: &FrameHeader,
        held: impl Fn(u64) -> Option<u32>,
    ) -> FollowerDecision {
        if frame.epoch < self.epoch {
            return FollowerDecision::Refuse(Refusal::StaleEpoch {
                frame: frame.epoch,
                current: self.epoch,
            });
        }
        if let Some(w) = frame
            .records
            .windows(2)
            .find(|w| w[1].seq != w[0].seq.wrapping_add(1))
        {
            return FollowerDecision::Refuse(Refusal::NotConsecutive {
                previous: w[0].seq,
                got: w[1].seq,
            });
        }
        // A newer epoch: every record this replica holds from the new term's first sequence on
        // was written by an older primary and never reached the new one. It is moved aside.
        let mut next_seq = self.next_seq;
        let mut move_aside_from = None;
        if frame.epoch > self.epoch && next_seq > frame.epoch_start {
            move_aside_from = Some(frame.epoch_start);
            next_seq = frame.epoch_start;
        }
        if let Some(first) = frame.records.first()
            && first.seq > next_seq
        {
            return FollowerDecision::Refuse(Refusal::Gap {
                expected: next_seq,
                got: first.seq,
            });
        }
        let mut skip = 0;
        for r in frame.records.iter().take_while(|r| r.seq < next_seq) {
            match held(r.seq) {
                Some(crc) if crc == r.crc => skip += 1,
                held => {
                    return FollowerDecision::Refuse(Refusal::Diverged {
                        seq: r.seq,
                        epoch: frame.epoch,
                        held: held.unwrap_or(0),
                        frame: r.crc,
                    });
                }
            }
        }
        if frame.epoch > self.epoch {
            self.lineage.begin(frame.epoch, frame.epoch_start);
        }
        self.epoch = frame.epoch;
        self.next_seq = next_seq;
        if move_aside_from.is_none() && skip == frame.records.len() {
            return FollowerDecision::Duplicate {
                durable: self.next_seq,
            };
        }
        FollowerDecision::Append {
            move_aside_from,
            skip,
        }
    }

    /// Records that the records of an accepted frame are now held durably, up to and including
    /// `last`. Returns the sequence to acknowledge (the next one needed).
    pub fn appended(&mut self, last: RecordId) -> u64 {
        self.next_seq = self.next_seq.max(last.seq + 1);
        self.next_seq
    }
}
