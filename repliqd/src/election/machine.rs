//! The I/O-free election state machine of one queue on one node.
//!
//! The driver (or a simulation) feeds it what it observed of the lease and of the other
//! candidates, the outcome of each write it asked for, and the time; it answers with
//! [`Command`]s. Time is a [`Duration`] since any origin the caller keeps monotonic.
//!
//! Rules:
//!
//! * The lease holder is the primary. The lease carries the epoch: every acquisition by a node
//!   that did not hold it writes a larger epoch (`max(lease epoch, local epoch) + 1`), and the
//!   new primary's queue epoch is that number. A holder that resumes after a restart (the lease
//!   still names it with its own epoch) keeps the epoch.
//! * Expiry is judged by the observer's own clock: a lease whose record did not change for
//!   `lease_duration` since this node first saw that version is expired (the holder rewrites the
//!   record at every renewal, so a live holder keeps changing it).
//! * The holder fences itself (stops accepting enqueues) once `renew_deadline` has passed since
//!   it **sent** its last successful write. `renew_deadline < lease_duration`, and an observer
//!   starts its clock only after that write landed, so the fence always comes first.
//! * Only the most up-to-date candidate may acquire: its [`Position`] (the epoch of its last
//!   record, then `next_seq`, compared in that order as Raft compares logs) must be at least
//!   that of every other candidate it heard from within `lease_duration` (ties: the smaller node
//!   name). A replica holds a prefix of its primary's log, and a newer epoch's records were
//!   written over whatever an older primary held beyond that epoch's start, so that candidate
//!   holds every message any live replica acknowledged, even where an old primary back from a
//!   pause holds more (unacknowledged) records. A node must have watched for `lease_duration`
//!   before it takes a lease over, so that it has heard every live candidate.
//! * A node whose queue says "primary" but which does not hold the lease fences itself.

use std::collections::BTreeMap;
use std::time::Duration;

pub use repliq::replication::Role;

/// The election's timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long an unchanged lease record stays valid for observers.
    pub lease_duration: Duration,
    /// How long after sending its last successful renewal a holder keeps acting as primary.
    pub renew_deadline: Duration,
    /// How often the driver observes and renews.
    pub retry_period: Duration,
}

impl Timing {
    /// Checks `retry_period * 2 + renew_deadline <= lease_duration` (candidates re-advertise
    /// their final position between the holder's fence and the takeover).
    ///
    /// # Errors
    ///
    /// A sentence naming the violated rule.
    pub fn check(&self) -> Result<(), String> {
        if self.retry_period.is_zero() {
            return Err("retry_period must be positive".into());
        }
        if self.renew_deadline < self.retry_period * 2 {
            return Err(format!(
                "renew_deadline ({:?}) must be at least twice retry_period ({:?})",
                self.renew_deadline, self.retry_period
            ));
        }
        if self.renew_deadline + self.retry_period * 2 > self.lease_duration {
            return Err(format!(
                "lease_duration ({:?}) must be at least renew_deadline ({:?}) plus twice \
                 retry_period ({:?})",
                self.lease_duration, self.renew_deadline, self.retry_period
            ));
        }
        Ok(())
    }
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            lease_duration: Duration::from_secs(10),
            renew_deadline: Duration::from_secs(6),
            retry_period: Duration::from_secs(1),
        }
    }
}

/// What a node read of the lease record.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeaseView {
    /// The holder, `None` if the lease is free or absent.
    pub holder: Option<String>,
    /// The last epoch ever granted (0: never).
    pub epoch: u64,
    /// An opaque compare-and-swap token of the record (changes at every write).
    pub token: String,
}

/// How up to date a copy of the queue is: ordered by the epoch of its last record, then by
/// `next_seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    /// The epoch in which its last record was written (0: unknown, or no record).
    pub last_epoch: u64,
    /// One past the last sequence number it holds.
    pub next_seq: u64,
}

/// Another node's advertised position in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CandidateView {
    /// Its node name.
    pub node: String,
    /// Where its copy stands.
    pub position: Position,
    /// An opaque token that changes at every advertisement.
    pub token: String,
}

/// One observation of the coordination backend.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Observation {
    /// The lease.
    pub lease: LeaseView,
    /// The advertised candidates (this node's own advertisement may be among them).
    pub candidates: Vec<CandidateView>,
}

/// This node's local copy of the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Local {
    /// Its role in the queue's state file.
    pub role: Role,
    /// Its epoch.
    pub epoch: u64,
    /// Where its copy stands.
    pub position: Position,
}

/// What the machine asks the driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Write the lease as held by this node with `epoch`, if its token is still `expected`;
    /// report the outcome with [`Election::written`] and the time the write was sent.
    Write {
        /// The epoch to write.
        epoch: u64,
        /// The compare-and-swap token.
        expected: String,
        /// `true`: taking the lease (over); `false`: renewing or resuming it.
        acquire: bool,
    },
    /// Publish this node's position as a candidate.
    Advertise {
        /// Where this node's copy stands.
        position: Position,
    },
    /// Stop accepting enqueues now (become a replica of whoever comes next).
    Fence,
    /// Become the primary of `epoch`.
    Promote {
        /// The new epoch.
        epoch: u64,
    },
}

/// The outcome of a [`Command::Write`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Written; the record's new token.
    Written(String),
    /// The token did not match (someone else wrote the record).
    Conflict,
    /// The backend could not be reached or answered with an error.
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Leading {
    epoch: u64,
    token: String,
    valid_until: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    token: String,
    since: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pending {
    epoch: u64,
    acquire: bool,
    promote: bool,
}

/// The election of one queue on one node.
#[derive(Debug, Clone)]
pub struct Election {
    node: String,
    timing: Timing,
    started: Option<Duration>,
    lease_seen: Option<Seen>,
    candidates: BTreeMap<String, (Position, Seen)>,
    leading: Option<Leading>,
    pending: Option<Pending>,
}

impl Election {
    /// A node that holds nothing yet.
    #[must_use]
    pub fn new(node: impl Into<String>, timing: Timing) -> Self {
        Election {
            node: node.into(),
            timing,
            started: None,
            lease_seen: None,
            candidates: BTreeMap::new(),
            leading: None,
            pending: None,
        }
    }

    /// This node's name.
    #[must_use]
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The epoch this node leads, if it holds the lease (and has not passed its renew deadline).
    #[must_use]
    pub fn leading(&self) -> Option<u64> {
        self.leading.as_ref().map(|l| l.epoch)
    }

    /// The time by which the current holder must have renewed, if this node leads.
    #[must_use]
    pub fn valid_until(&self) -> Option<Duration> {
        self.leading.as_ref().map(|l| l.valid_until)
    }

    /// Time passes: fences a holder whose renew deadline has passed.
    pub fn tick(&mut self, now: Duration) -> Vec<Command> {
        match &self.leading {
            Some(l) if now >= l.valid_until => {
                self.leading = None;
                vec![Command::Fence]
            }
            _ => Vec::new(),
        }
    }

    /// The backend could not be read. A queue that says "primary" without this node having
    /// confirmed the lease (e.g. the daemon restarted while the backend is unreachable) is
    /// fenced once `renew_deadline` has passed since the first round: it cannot know that no
    /// one else holds the lease.
    pub fn unreachable(&mut self, now: Duration, local: Local) -> Vec<Command> {
        let mut out = self.tick(now);
        let started = *self.started.get_or_insert(now);
        if out.is_empty()
            && self.leading.is_none()
            && local.role == Role::Primary
            && now >= started + self.timing.renew_deadline
        {
            out.push(Command::Fence);
        }
        out
    }

    /// One round: what this node read of the backend, and its local copy.
    pub fn observe(&mut self, now: Duration, local: Local, obs: &Observation) -> Vec<Command> {
        let mut out = self.tick(now);
        let started = *self.started.get_or_insert(now);
        if self
            .lease_seen
            .as_ref()
            .is_none_or(|s| s.token != obs.lease.token)
        {
            self.lease_seen = Some(Seen {
                token: obs.lease.token.clone(),
                since: now,
            });
        }
        for c in &obs.candidates {
            if c.node == self.node {
                continue;
            }
            let entry = self.candidates.entry(c.node.clone()).or_insert_with(|| {
                (
                    c.position,
                    Seen {
                        token: c.token.clone(),
                        since: now,
                    },
                )
            });
            if entry.1.token != c.token {
                entry.1 = Seen {
                    token: c.token.clone(),
                    since: now,
                };
            }
            entry.0 = c.position;
        }
        let lease = &obs.lease;
        let mine = lease.holder.as_deref() == Some(self.node.as_str());

        if let Some(l) = &self.leading {
            if mine && lease.epoch == l.epoch && local.role == Role::Primary {
                out.push(Command::Write {
                    epoch: l.epoch,
                    expected: lease.token.clone(),
                    acquire: false,
                });
            } else {
                // Someone else wrote the lease, or the queue was demoted under us.
                self.leading = None;
                out.push(Command::Fence);
            }
            return out;
        }
        if out.contains(&Command::Fence) {
            return out;
        }

        if local.role == Role::Primary {
            if mine && lease.epoch == local.epoch {
                // A holder back from a restart within its lease: resume without a new epoch.
                self.pending = Some(Pending {
                    epoch: local.epoch,
                    acquire: false,
                    promote: false,
                });
                out.push(Command::Write {
                    epoch: local.epoch,
                    expected: lease.token.clone(),
                    acquire: false,
                });
            } else if lease.epoch == 0 && lease.holder.is_none() {
                // A queue that was never elected: its creator takes the first lease.
                let epoch = local.epoch.max(1);
                self.pending = Some(Pending {
                    epoch,
                    acquire: true,
                    promote: epoch != local.epoch,
                });
                out.push(Command::Write {
                    epoch,
                    expected: lease.token.clone(),
                    acquire: true,
                });
            } else {
                // The state file says primary but the lease does not back it.
                out.push(Command::Fence);
            }
            return out;
        }

        out.push(Command::Advertise {
            position: local.position,
        });
        let since = self.lease_seen.as_ref().map_or(now, |s| s.since);
        let expired = lease.holder.is_none() || mine || now >= since + self.timing.lease_duration;
        let watched = now >= started + self.timing.lease_duration;
        if expired && watched && self.most_up_to_date(now, local.position) {
            let epoch = lease.epoch.max(local.epoch) + 1;
            self.pending = Some(Pending {
                epoch,
                acquire: true,
                promote: true,
            });
            out.push(Command::Write {
                epoch,
                expected: lease.token.clone(),
                acquire: true,
            });
        }
        out
    }

    fn most_up_to_date(&self, now: Duration, mine: Position) -> bool {
        self.candidates.iter().all(|(node, (theirs, seen))| {
            let fresh = now < seen.since + self.timing.lease_duration;
            !fresh || mine > *theirs || (mine == *theirs && self.node.as_str() < node.as_str())
        })
    }

    /// The outcome of the last [`Command::Write`], which was sent at `sent`.
    pub fn written(
        &mut self,
        now: Duration,
        sent: Duration,
        outcome: WriteOutcome,
    ) -> Vec<Command> {
        let pending = self.pending.take();
        let mut out = Vec::new();
        match outcome {
            WriteOutcome::Written(token) => {
                self.lease_seen = Some(Seen {
                    token: token.clone(),
                    since: now,
                });
                let valid_until = sent + self.timing.renew_deadline;
                if let Some(l) = &mut self.leading {
                    l.token = token;
                    l.valid_until = valid_until;
                } else if let Some(p) = pending {
                    self.leading = Some(Leading {
                        epoch: p.epoch,
                        token,
                        valid_until,
                    });
                    if p.promote {
                        out.push(Command::Promote { epoch: p.epoch });
                    }
                }
            }
            WriteOutcome::Conflict => {
                if self.leading.take().is_some() {
                    out.push(Command::Fence);
                }
            }
            WriteOutcome::Failed => {}
        }
        out.extend(self.tick(now));
        out
    }
}
