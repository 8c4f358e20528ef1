//! The replica side of replication.

use super::{FrameHeader, RecordId};

/// The state of one replicated queue on a replica.
#[derive(Debug, Clone)]
pub struct Follower {
    epoch: u64,
    /// The next sequence number this replica needs (all before it are held durably).
    next_seq: u64,
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

/// Why a frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
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
    /// A follower that has seen `epoch` and holds every record before `next_seq`.
    #[must_use]
    pub fn new(epoch: u64, next_seq: u64) -> Self {
        Follower { epoch, next_seq }
    }

    /// The newest epoch this follower has seen.
    #[must_use]
    pub fn epoch(&self) -> u64 {
        self.epoch
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
