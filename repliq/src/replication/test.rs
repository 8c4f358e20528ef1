//! The replication state machine driven over a simulated network: messages are delivered in
//! random order, duplicated, and dropped (a dropped message breaks its stream, as with gRPC), and
//! nodes fail over. After every step the safety invariants are checked; once the network heals,
//! every replica must converge to the primary's log.

use std::collections::BTreeMap;

use super::*;

/// A tiny deterministic PRNG (xorshift64*), so failures replay from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[derive(Debug, Clone)]
enum Msg {
    Subscribe { epoch: u64, next_seq: u64 },
    Frame(FrameHeader),
    Ack { epoch: u64, next_seq: u64 },
}

/// A node's journal: records by sequence, and what was moved aside.
#[derive(Debug, Default, Clone)]
struct Log {
    records: Vec<RecordId>,
    moved_aside: Vec<RecordId>,
}

impl Log {
    fn next_seq(&self) -> u64 {
        self.records.len() as u64
    }
    fn crc(&self, seq: u64) -> Option<u32> {
        self.records.get(seq as usize).map(|r| r.crc)
    }
}

struct Cluster {
    rng: Rng,
    leader_name: NodeId,
    leader: Leader,
    followers: BTreeMap<NodeId, Follower>,
    logs: BTreeMap<NodeId, Log>,
    /// In-flight messages: (from, to, msg).
    net: Vec<(NodeId, NodeId, Msg)>,
    /// Acknowledged (`Acked`) sequence published by the current leader.
    acked: u64,
    drop_percent: u64,
    dup_percent: u64,
    next_crc: u32,
    /// A node cut off from everyone: messages to and from it are lost while it is set.
    partitioned: Option<NodeId>,
}

impl Cluster {
    fn new(seed: u64, nodes: &[&str], required_acks: usize) -> Self {
        let leader_name = nodes[0].to_string();
        let config = LeaderConfig {
            epoch: 1,
            epoch_start: 0,
            required_acks,
            max_batch: 3,
            window: 8,
        };
        let mut c = Cluster {
            rng: Rng(seed | 1),
            leader: Leader::new(config, 0),
            leader_name,
            followers: BTreeMap::new(),
            logs: nodes
                .iter()
                .map(|n| (n.to_string(), Log::default()))
                .collect(),
            net: Vec::new(),
            acked: 0,
            drop_percent: 10,
            dup_percent: 10,
            next_crc: 1,
            partitioned: None,
        };
        for n in &nodes[1..] {
            c.followers
                .insert(n.to_string(), Follower::new(1, 0, Lineage::of(1, 0)));
            c.send(
                n,
                &c.leader_name.clone(),
                Msg::Subscribe {
                    epoch: 1,
                    next_seq: 0,
                },
            );
        }
        c
    }

    fn send(&mut self, from: &str, to: &str, msg: Msg) {
        self.net.push((from.to_string(), to.to_string(), msg));
    }

    /// The primary commits one new record.
    fn write(&mut self) {
        let crc = self.next_crc;
        self.next_crc += 1;
        let leader = self.leader_name.clone();
        let log = self.logs.get_mut(&leader).unwrap();
        log.records.push(RecordId {
            seq: log.next_seq(),
            crc,
        });
        let next = log.next_seq();
        let actions = self.leader.committed(next);
        self.apply_leader(actions);
    }

    fn apply_leader(&mut self, actions: Vec<LeaderAction>) {
        for a in actions {
            match a {
                LeaderAction::Send { node, from, to } => {
                    let log = &self.logs[&self.leader_name];
                    let records = log.records[from as usize..to as usize].to_vec();
                    let frame = self.leader.frame_header(records);
                    let leader = self.leader_name.clone();
                    self.send(&leader, &node, Msg::Frame(frame));
                }
                LeaderAction::Acked { next_seq } => {
                    assert!(next_seq >= self.acked, "acked went backwards");
                    self.acked = next_seq;
                    self.check_acked_is_held();
                }
                LeaderAction::StepDown { epoch } => {
                    panic!("the only leader was told to step down (epoch {epoch})")
                }
            }
        }
    }

    /// Delivers (or drops, or duplicates) one random in-flight message. Returns false if none.
    fn step(&mut self) -> bool {
        if self.net.is_empty() {
            return false;
        }
        let i = self.rng.below(self.net.len() as u64) as usize;
        let (from, to, msg) = if self.rng.chance(self.dup_percent) {
            self.net[i].clone()
        } else {
            self.net.swap_remove(i)
        };
        let cut = self
            .partitioned
            .as_ref()
            .is_some_and(|p| *p == from || *p == to);
        if cut || self.rng.chance(self.drop_percent) {
            // A lost message breaks the stream between the two; the replica resubscribes.
            let replica = if to == self.leader_name { &from } else { &to };
            if let Some(f) = self.followers.get(replica) {
                let (epoch, next_seq) = (f.epoch(), f.next_seq());
                self.leader.disconnected(replica);
                let (replica, leader) = (replica.clone(), self.leader_name.clone());
                self.send(&replica, &leader, Msg::Subscribe { epoch, next_seq });
            }
            return true;
        }
        self.deliver(&from, &to, msg);
        true
    }

    fn deliver(&mut self, from: &str, to: &str, msg: Msg) {
        match msg {
            Msg::Subscribe { epoch, next_seq } if to == self.leader_name => {
                let actions = self.leader.subscribe(from, epoch, next_seq);
                self.apply_leader(actions);
            }
            Msg::Ack { epoch, next_seq } if to == self.leader_name => {
                let actions = self.leader.ack(from, epoch, next_seq);
                self.apply_leader(actions);
            }
            Msg::Frame(frame) => {
                let Some(follower) = self.followers.get_mut(to) else {
                    return;
                };
                let log = self.logs.get_mut(to).unwrap();
                match follower.on_frame(&frame, |s| log.crc(s)) {
                    FollowerDecision::Append {
                        move_aside_from,
                        skip,
                    } => {
                        if let Some(from_seq) = move_aside_from {
                            let aside = log.records.split_off(from_seq as usize);
                            log.moved_aside.extend(aside);
                        }
                        for r in &frame.records[skip..] {
                            assert_eq!(r.seq, log.next_seq(), "append must be at the log's end");
                            log.records.push(*r);
                        }
                        let next_seq = match frame.records.last() {
                            Some(last) => follower.appended(*last),
                            None => follower.next_seq(),
                        };
                        let epoch = follower.epoch();
                        self.send(to, from, Msg::Ack { epoch, next_seq });
                    }
                    FollowerDecision::Duplicate { durable } => {
                        let epoch = follower.epoch();
                        self.send(
                            to,
                            from,
                            Msg::Ack {
                                epoch,
                                next_seq: durable,
                            },
                        );
                    }
                    FollowerDecision::Refuse(Refusal::Gap { .. }) => {
                        // A frame that overtook a lost one: resubscribe from what we hold.
                        let (epoch, next_seq) = (follower.epoch(), follower.next_seq());
                        self.leader.disconnected(to);
                        self.send(to, from, Msg::Subscribe { epoch, next_seq });
                    }
                    FollowerDecision::Refuse(Refusal::StaleEpoch { .. }) => {}
                    FollowerDecision::Refuse(other) => panic!("unexpected refusal: {other}"),
                }
            }
            // Messages addressed to a node that is no longer the leader are lost.
            _ => {}
        }
        self.check_prefixes();
    }

    /// Every replica's log agrees with the primary's on every sequence both hold (within the
    /// part the current primary's epoch vouches for).
    fn check_prefixes(&self) {
        let primary = &self.logs[&self.leader_name].records;
        for (name, f) in &self.followers {
            let log = &self.logs[name].records;
            let shared = if f.epoch() == self.leader.config().epoch {
                log.len()
            } else {
                log.len().min(self.leader.config().epoch_start as usize)
            };
            assert!(shared <= primary.len() || f.epoch() < self.leader.config().epoch);
            for i in 0..shared.min(primary.len()) {
                assert_eq!(log[i], primary[i], "{name} diverges at {i}");
            }
        }
    }

    /// Never a false ack: at least `required_acks` replicas hold every acknowledged record.
    fn check_acked_is_held(&self) {
        let k = self.leader.config().required_acks;
        let holding = self
            .followers
            .keys()
            .filter(|n| self.logs[*n].next_seq() >= self.acked)
            .count();
        assert!(
            holding >= k,
            "acked {} but only {holding} replicas hold it",
            self.acked
        );
    }

    /// Runs with a healthy network until nothing is in flight, then checks convergence.
    fn heal_and_converge(&mut self) {
        self.partitioned = None;
        self.drop_percent = 0;
        self.dup_percent = 0;
        // Everyone (re)subscribes, in case their last message was lost.
        let names: Vec<NodeId> = self.followers.keys().cloned().collect();
        for n in &names {
            let f = &self.followers[n];
            let (epoch, next_seq) = (f.epoch(), f.next_seq());
            self.leader.disconnected(n);
            let leader = self.leader_name.clone();
            self.send(n, &leader, Msg::Subscribe { epoch, next_seq });
        }
        for _ in 0..1_000_000 {
            if !self.step() {
                break;
            }
        }
        assert!(self.net.is_empty(), "the network did not quiesce");
        let primary = &self.logs[&self.leader_name].records;
        for n in &names {
            assert_eq!(&self.logs[n].records, primary, "{n} did not converge");
        }
        assert_eq!(
            self.acked,
            primary.len() as u64,
            "everything is acknowledged"
        );
    }

    /// Promotes `new` to primary with the next epoch; the old primary becomes a replica.
    fn fail_over(&mut self, new: &str) {
        let old = std::mem::replace(&mut self.leader_name, new.to_string());
        let epoch = self.leader.config().epoch + 1;
        let next = self.logs[new].next_seq();
        let mut config = self.leader.config().clone();
        config.epoch = epoch;
        config.epoch_start = next;
        self.leader = Leader::new(config, next);
        self.acked = 0;
        self.followers.remove(new);
        // The old primary restarts as a replica of the previous epoch.
        let old_next = self.logs[&old].next_seq();
        self.followers.insert(
            old.clone(),
            Follower::new(epoch - 1, old_next, Lineage::of(epoch - 1, 0)),
        );
        // The other followers keep their state and learn the new epoch from the new primary.
        // In-flight messages of the old term are lost with the old primary's streams.
        self.net.clear();
        let names: Vec<NodeId> = self.followers.keys().cloned().collect();
        for n in names {
            let f = &self.followers[&n];
            let (e, s) = (f.epoch(), f.next_seq());
            self.send(
                &n,
                new,
                Msg::Subscribe {
                    epoch: e,
                    next_seq: s,
                },
            );
        }
    }
}

#[test]
fn replicas_converge_under_drops_duplicates_and_reordering() {
    for seed in 1..=40 {
        let mut c = Cluster::new(seed, &["a", "b", "c", "d"], 2);
        for _ in 0..300 {
            if c.rng.chance(30) {
                c.write();
            }
            c.step();
        }
        c.heal_and_converge();
    }
}

#[test]
fn a_partitioned_replica_blocks_no_quorum_and_catches_up_after_healing() {
    for seed in 1..=30 {
        // Four nodes, two acks needed: one replica cut off must not stop acknowledgements.
        let mut c = Cluster::new(seed, &["a", "b", "c", "d"], 2);
        let mut acked_at_cut = 0;
        for step in 0..400 {
            if step == 100 {
                c.partitioned = Some("d".into());
                acked_at_cut = c.acked;
            }
            if step == 300 {
                assert!(
                    c.acked > acked_at_cut,
                    "seed {seed}: acknowledgements stalled while one replica was cut off"
                );

                c.partitioned = None;
                // The stream broke: the replica resubscribes.
                let f = &c.followers["d"];
                let (epoch, next_seq) = (f.epoch(), f.next_seq());
                c.leader.disconnected("d");
                c.send("d", "a", Msg::Subscribe { epoch, next_seq });
            }
            if c.rng.chance(30) {
                c.write();
            }
            c.step();
        }
        c.heal_and_converge();
    }
}

#[test]
fn failover_keeps_every_acknowledged_record_and_moves_the_old_suffix_aside() {
    for seed in 1..=40 {
        let mut c = Cluster::new(seed, &["a", "b", "c"], 1);
        for _ in 0..200 {
            if c.rng.chance(40) {
                c.write();
            }
            c.step();
        }
        let acked = c.acked;
        let old_log = c.logs["a"].records.clone();
        // Promote the replica that holds the most (what an operator or a lease would pick).
        let new = ["b", "c"]
            .into_iter()
            .max_by_key(|n| c.logs[*n].next_seq())
            .unwrap();
        c.fail_over(new);
        for _ in 0..200 {
            if c.rng.chance(40) {
                c.write();
            }
            c.step();
        }
        c.heal_and_converge();
        let now = &c.logs[new].records;
        assert!(
            now.len() as u64 >= acked && now[..acked as usize] == old_log[..acked as usize],
            "seed {seed}: an acknowledged record was lost in failover"
        );
        // The old primary's unreplicated suffix was moved aside, not merged.
        let a = &c.logs["a"];
        assert_eq!(&a.records, now);
        let epoch_start = c.leader.config().epoch_start as usize;
        if old_log.len() > epoch_start {
            assert_eq!(
                a.moved_aside[..old_log.len() - epoch_start],
                old_log[epoch_start..],
                "seed {seed}: the moved-aside suffix is the old primary's unreplicated tail"
            );
        }
    }
}

#[test]
fn follower_refuses_stale_epochs_gaps_and_divergence() {
    let mut f = Follower::new(2, 3, Lineage::of(2, 0));
    let held = |s: u64| (s < 3).then_some(s as u32 + 100);
    let frame = |epoch, records: &[(u64, u32)]| FrameHeader {
        epoch,
        epoch_start: 0,
        records: records
            .iter()
            .map(|&(seq, crc)| RecordId { seq, crc })
            .collect(),
    };
    assert_eq!(
        f.on_frame(&frame(1, &[(3, 1)]), held),
        FollowerDecision::Refuse(Refusal::StaleEpoch {
            frame: 1,
            current: 2
        })
    );
    assert_eq!(
        f.on_frame(&frame(2, &[(5, 1)]), held),
        FollowerDecision::Refuse(Refusal::Gap {
            expected: 3,
            got: 5
        })
    );
    assert_eq!(
        f.on_frame(&frame(2, &[(3, 1), (5, 1)]), held),
        FollowerDecision::Refuse(Refusal::NotConsecutive {
            previous: 3,
            got: 5
        })
    );
    assert_eq!(
        f.on_frame(&frame(2, &[(2, 7)]), held),
        FollowerDecision::Refuse(Refusal::Diverged {
            seq: 2,
            epoch: 2,
            held: 102,
            frame: 7
        })
    );
    // Already held with the same checksum: skipped; the rest is appended.
    assert_eq!(
        f.on_frame(&frame(2, &[(1, 101), (2, 102), (3, 9)]), held),
        FollowerDecision::Append {
            move_aside_from: None,
            skip: 2
        }
    );
    assert_eq!(f.appended(RecordId { seq: 3, crc: 9 }), 4);
    assert_eq!(
        f.on_frame(&frame(2, &[(1, 101)]), held),
        FollowerDecision::Duplicate { durable: 4 }
    );
    assert_eq!(
        Refusal::Gap {
            expected: 3,
            got: 5
        }
        .to_string(),
        "gap: this replica needs sequence 3, the frame starts at 5"
    );
}

#[test]
fn leader_steps_down_for_a_newer_epoch_and_never_acks_without_k_replicas() {
    let config = LeaderConfig {
        epoch: 3,
        epoch_start: 10,
        required_acks: 2,
        max_batch: 100,
        window: 100,
    };
    let mut l = Leader::new(config, 10);
    assert_eq!(
        l.subscribe("x", 4, 0),
        vec![LeaderAction::StepDown { epoch: 4 }]
    );
    let sent = l.subscribe("b", 3, 10);
    assert!(sent.is_empty(), "{sent:?}");
    let actions = l.committed(15);
    assert_eq!(
        actions,
        vec![LeaderAction::Send {
            node: "b".into(),
            from: 10,
            to: 15
        }]
    );
    // One replica is not two: no ack yet.
    assert!(l.ack("b", 3, 15).is_empty());
    assert_eq!(l.acked(), 0);
    // A replica of an older epoch is sent an epoch announcement first.
    let actions = l.subscribe("c", 2, 12);
    assert_eq!(
        actions[0],
        LeaderAction::Send {
            node: "c".into(),
            from: 10,
            to: 10
        }
    );
    assert!(actions.contains(&LeaderAction::Acked { next_seq: 10 }));
    let actions = l.ack("c", 3, 15);
    assert_eq!(actions, vec![LeaderAction::Acked { next_seq: 15 }]);
    assert_eq!(l.lag().get("c"), Some(&0));
}

/// Seeds 113 and 163 of the fault schedules (docs/CHECKER.md): a, primary of epoch 1, wrote
/// record 336 alone while partitioned; b's epoch 2 began at 336 and acknowledged its own 336;
/// c's epoch 3 began at 914. When c's stream reaches a, a's record 336 must go aside: knowing
/// only epoch 3's start (914) kept it, and a held a record 336 no other node had.
#[test]
fn an_old_primary_that_missed_a_whole_epoch_moves_aside_from_where_that_epoch_began() {
    let mut c = Lineage::of(1, 0);
    c.begin(2, 336);
    c.begin(3, 914);

    let mut a = Follower::new(1, 337, Lineage::of(1, 0));
    let accepted = a.on_hello(3, 914, &c).unwrap();
    assert_eq!(accepted.move_aside_from, Some(336));
    assert_eq!((a.epoch(), a.next_seq()), (3, 336));
    assert_eq!(a.lineage(), &c, "a holds c's records from now on");
    // A reconnect of the same stream moves nothing more.
    assert_eq!(a.on_hello(3, 914, &c).unwrap().move_aside_from, None);

    // A replica that followed b holds b's records up to 400: they are c's too.
    let mut of_b = Lineage::of(1, 0);
    of_b.begin(2, 336);
    let mut b_follower = Follower::new(2, 400, of_b);
    assert_eq!(
        b_follower.on_hello(3, 914, &c).unwrap().move_aside_from,
        None
    );

    // A primary that predates histories sends none: only its own epoch's start is known (the
    // rule before histories, kept for it).
    let mut a_old = Follower::new(1, 337, Lineage::of(1, 0));
    let accepted = a_old.on_hello(3, 914, &Lineage::default()).unwrap();
    assert_eq!(accepted.move_aside_from, None);
    let mut kept = Lineage::of(1, 0);
    kept.begin(3, 914);
    assert_eq!(
        a_old.lineage(),
        &kept,
        "its own history, with the primary's epoch added"
    );

    // A replica whose stored epoch is already the primary's (it learned the number, not the
    // records: a fenced primary) still moves its own records aside.
    let mut fenced = Follower::new(2, 350, Lineage::of(1, 0));
    let mut b = Lineage::of(1, 0);
    b.begin(2, 336);
    assert_eq!(
        fenced.on_hello(2, 336, &b).unwrap().move_aside_from,
        Some(336)
    );
}

/// Found by the simulation under the checker (`repliq-check simulate --seed 19 --required-acks 2
/// --election epoch-then-next-seq`, minimized to `[9.2s oneway primary 3.9s, 11.6s kill primary
/// 6.0s, 15.1s pause primary 2.3s, 18.0s pause primary 3.3s]`): a, primary of epoch 1, is killed
/// holding records up to 22; b becomes primary of epoch 2 from 19 and writes 19..23 (none
/// acknowledged: the third node lags), then is paused past its lease; a comes back and is elected
/// primary of epoch 3 from 22, never having had epoch 2. When a's stream reaches b, b's last
/// records are of an epoch a's history does not name: they must go aside from where epoch 2
/// began on b (19). Looking only for the first epoch of a's history newer than 2 (epoch 3 from
/// 22) kept b's epoch-2 records 19..22 where a holds its own: b diverged and never converged.
#[test]
fn a_replica_whose_last_epoch_the_primary_never_had_moves_it_aside() {
    let mut a = Lineage::of(1, 0);
    a.begin(3, 22);
    let mut of_b = Lineage::of(1, 0);
    of_b.begin(2, 19);
    let mut b = Follower::new(2, 23, of_b.clone());
    let accepted = b.on_hello(3, 22, &a).unwrap();
    assert_eq!(accepted.move_aside_from, Some(19));
    assert_eq!((b.epoch(), b.next_seq()), (3, 19));
    assert_eq!(b.lineage(), &a);

    // The same when b holds fewer records than a's epoch 1 had: its epoch-2 records still go.
    let mut b = Follower::new(2, 21, of_b.clone());
    assert_eq!(b.on_hello(3, 22, &a).unwrap().move_aside_from, Some(19));
    // And a replica that holds only what both share keeps everything.
    let mut c = Follower::new(2, 19, of_b);
    assert_eq!(c.on_hello(3, 22, &a).unwrap().move_aside_from, None);

    // No epoch in common: nothing it holds is known to be the primary's.
    let mut d = Follower::new(5, 8, Lineage::of(5, 0));
    assert_eq!(
        d.on_hello(6, 3, &Lineage::of(6, 3))
            .unwrap()
            .move_aside_from,
        Some(0)
    );
}
