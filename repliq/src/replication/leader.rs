//! The primary side of replication.

use std::collections::BTreeMap;

use super::{FrameHeader, NodeId, RecordId};

/// How a [`Leader`] replicates.
#[derive(Debug, Clone)]
pub struct LeaderConfig {
    /// This primary's epoch.
    pub epoch: u64,
    /// The first sequence number written in this epoch (the journal's next sequence when this
    /// node became primary).
    pub epoch_start: u64,
    /// How many replicas must hold a record before it counts as acknowledged (k of n; 0 in
    /// asynchronous mode, where every committed record counts as acknowledged).
    pub required_acks: usize,
    /// At most this many records per frame.
    pub max_batch: u64,
    /// At most this many records sent to a replica beyond its last acknowledgement.
    pub window: u64,
}

/// What the primary's transport and journal must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaderAction {
    /// Send the committed records `from..to` (possibly none: a frame that only announces the
    /// epoch) to `node`, as one frame; build its header with [`Leader::frame_header`].
    Send {
        /// The replica.
        node: NodeId,
        /// First sequence to send.
        from: u64,
        /// One past the last sequence to send.
        to: u64,
    },
    /// `required_acks` replicas now hold every record before `next_seq`: publish it in the
    /// queue's meta file, where synchronous producers wait for it.
    Acked {
        /// One past the last acknowledged sequence.
        next_seq: u64,
    },
    /// A node reported a newer epoch: this node is no longer primary and must stop accepting
    /// writes and become a replica.
    StepDown {
        /// The newer epoch.
        epoch: u64,
    },
}

#[derive(Debug, Clone)]
struct Progress {
    connected: bool,
    /// Next sequence to put into a frame for this replica.
    next_to_send: u64,
    /// The replica holds every record before this, durably (its last acknowledgement).
    durable: u64,
}

/// The replication state of one queue on its primary.
#[derive(Debug, Clone)]
pub struct Leader {
    config: LeaderConfig,
    /// One past the last committed local record.
    next_seq: u64,
    replicas: BTreeMap<NodeId, Progress>,
    acked: u64,
}

impl Leader {
    /// A leader whose journal holds every record before `next_seq`.
    #[must_use]
    pub fn new(config: LeaderConfig, next_seq: u64) -> Self {
        let acked = if config.required_acks == 0 {
            next_seq
        } else {
            0
        };
        Leader {
            config,
            next_seq,
            replicas: BTreeMap::new(),
            acked,
        }
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &LeaderConfig {
        &self.config
    }

    /// One past the last sequence that `required_acks` replicas hold.
    #[must_use]
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// One past the last committed local record, as last reported.
    #[must_use]
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// How many records each known replica lacks.
    #[must_use]
    pub fn lag(&self) -> BTreeMap<NodeId, u64> {
        self.replicas
            .iter()
            .map(|(n, p)| (n.clone(), self.next_seq.saturating_sub(p.durable)))
            .collect()
    }

    /// The header of a frame carrying `records`.
    #[must_use]
    pub fn frame_header(&self, records: Vec<RecordId>) -> FrameHeader {
        FrameHeader {
            epoch: self.config.epoch,
            epoch_start: self.config.epoch_start,
            records,
        }
    }

    /// A replica subscribed: it has seen `epoch` and needs the records from `next_seq` on.
    pub fn subscribe(&mut self, node: &str, epoch: u64, next_seq: u64) -> Vec<LeaderAction> {
        if epoch > self.config.epoch {
            return vec![LeaderAction::StepDown { epoch }];
        }
        // A replica of an older epoch may hold records from this epoch's start on that this
        // primary never had: it keeps only what precedes the epoch's start.
        let holds = if epoch < self.config.epoch {
            next_seq.min(self.config.epoch_start)
        } else {
            next_seq
        };
        self.start(node, epoch, holds)
    }

    /// A replica subscribed that needs records this primary no longer holds (they are before its
    /// oldest segment, which starts at `oldest`): it is resynced from `oldest` on, dropping
    /// everything it held, and counts as holding every record before `oldest` (no record before
    /// it can be sent or acknowledged by anyone any more).
    pub fn resync(&mut self, node: &str, epoch: u64, oldest: u64) -> Vec<LeaderAction> {
        if epoch > self.config.epoch {
            return vec![LeaderAction::StepDown { epoch }];
        }
        self.start(node, epoch, oldest)
    }

    fn start(&mut self, node: &str, epoch: u64, holds: u64) -> Vec<LeaderAction> {
        let holds = holds.min(self.next_seq);
        self.replicas.insert(
            node.to_owned(),
            Progress {
                connected: true,
                next_to_send: holds,
                durable: holds,
            },
        );
        let mut actions = Vec::new();
        if epoch < self.config.epoch {
            // Tell it about this epoch even if there is nothing to send yet.
            actions.push(LeaderAction::Send {
                node: node.to_owned(),
                from: holds,
                to: holds,
            });
        }
        self.pump(node, &mut actions);
        self.update_acked(&mut actions);
        actions
    }

    /// The local journal committed every record before `next_seq`.
    pub fn committed(&mut self, next_seq: u64) -> Vec<LeaderAction> {
        self.next_seq = self.next_seq.max(next_seq);
        let mut actions = Vec::new();
        let nodes: Vec<NodeId> = self.replicas.keys().cloned().collect();
        for node in &nodes {
            self.pump(node, &mut actions);
        }
        self.update_acked(&mut actions);
        actions
    }

    /// A replica acknowledged that it holds every record before `next_seq` in `epoch`.
    pub fn ack(&mut self, node: &str, epoch: u64, next_seq: u64) -> Vec<LeaderAction> {
        if epoch > self.config.epoch {
            return vec![LeaderAction::StepDown { epoch }];
        }
        let mut actions = Vec::new();
        let limit = self.next_seq;
        match self.replicas.get_mut(node) {
            // An acknowledgement of an older epoch says nothing about this epoch's records.
            Some(p) if epoch == self.config.epoch => {
                p.durable = p.durable.max(next_seq.min(limit));
                p.next_to_send = p.next_to_send.max(p.durable);
            }
            _ => return actions,
        }
        self.pump(node, &mut actions);
        self.update_acked(&mut actions);
        actions
    }

    /// The stream to `node` broke. What it acknowledged still counts; it resubscribes to resume.
    pub fn disconnected(&mut self, node: &str) {
        if let Some(p) = self.replicas.get_mut(node) {
            p.connected = false;
            p.next_to_send = p.durable;
        }
    }

    fn pump(&mut self, node: &str, actions: &mut Vec<LeaderAction>) {
        let Some(p) = self.replicas.get_mut(node) else {
            return;
        };
        if !p.connected {
            return;
        }
        let limit = self
            .next_seq
            .min(p.durable.saturating_add(self.config.window));
        while p.next_to_send < limit {
            let to = limit.min(p.next_to_send.saturating_add(self.config.max_batch.max(1)));
            actions.push(LeaderAction::Send {
                node: node.to_owned(),
                from: p.next_to_send,
                to,
            });
            p.next_to_send = to;
        }
    }

    fn update_acked(&mut self, actions: &mut Vec<LeaderAction>) {
        let k = self.config.required_acks;
        let candidate = if k == 0 {
            self.next_seq
        } else {
            let mut durable: Vec<u64> = self.replicas.values().map(|p| p.durable).collect();
            if durable.len() < k {
                return;
            }
            durable.sort_unstable_by(|a, b| b.cmp(a));
            durable[k - 1]
        };
        if candidate > self.acked {
            self.acked = candidate;
            actions.push(LeaderAction::Acked {
                next_seq: candidate,
            });
        }
    }
}
