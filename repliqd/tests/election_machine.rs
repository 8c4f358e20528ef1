//! The election state machine against a simulated backend and clock: nodes are rounds of
//! `observe` / `written` / `tick`; the primary appends, replicas copy prefixes, one of them
//! acknowledges (k = 1 of 2). Invariants checked at every simulated 50 ms: at most one live node
//! acts as primary; epochs only grow; whoever is promoted holds every acknowledged record.

use std::collections::BTreeMap;
use std::time::Duration;

use repliqd::election::machine::{
    CandidateView, Command, Election, LeaseView, Local, Observation, Position, Role, Timing,
    WriteOutcome,
};

const STEP: Duration = Duration::from_millis(50);

#[derive(Default)]
struct Backend {
    holder: Option<String>,
    epoch: u64,
    version: u64,
    candidates: BTreeMap<String, (Position, u64)>,
}

impl Backend {
    fn observe(&self) -> Observation {
        Observation {
            lease: LeaseView {
                holder: self.holder.clone(),
                epoch: self.epoch,
                token: self.version.to_string(),
            },
            candidates: self
                .candidates
                .iter()
                .map(|(n, (position, v))| CandidateView {
                    node: n.clone(),
                    position: *position,
                    token: v.to_string(),
                })
                .collect(),
        }
    }
}

struct Node {
    name: String,
    machine: Election,
    role: Role,
    epoch: u64,
    /// The log: the epoch each record was written in.
    log: Vec<u64>,
    alive: bool,
    reachable: bool,
    /// Records copied per step from the primary (0: stuck).
    copy_rate: usize,
    /// Offset of this node's rounds within the retry period.
    phase: Duration,
    promotions: Vec<(Duration, u64)>,
    fences: Vec<Duration>,
}

struct Sim {
    now: Duration,
    timing: Timing,
    backend: Backend,
    nodes: Vec<Node>,
    acked: Vec<u64>,
    max_epoch: u64,
}

impl Sim {
    fn new(names: &[&str]) -> Sim {
        let timing = Timing::default();
        let nodes = names
            .iter()
            .enumerate()
            .map(|(i, n)| Node {
                name: (*n).to_owned(),
                machine: Election::new(*n, timing),
                role: if i == 0 { Role::Primary } else { Role::Replica },
                epoch: 1,
                log: Vec::new(),
                alive: true,
                reachable: true,
                copy_rate: 3,
                phase: STEP * (i as u32 * 7 % 20),
                promotions: Vec::new(),
                fences: Vec::new(),
            })
            .collect();
        Sim {
            now: Duration::ZERO,
            timing,
            backend: Backend::default(),
            nodes,
            acked: Vec::new(),
            max_epoch: 1,
        }
    }

    fn node(&mut self, name: &str) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.name == name).unwrap()
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.step();
            self.now += STEP;
        }
    }

    fn primaries(&self) -> Vec<&str> {
        self.nodes
            .iter()
            .filter(|n| n.alive && n.role == Role::Primary)
            .map(|n| n.name.as_str())
            .collect()
    }

    fn step(&mut self) {
        let now = self.now;
        for i in 0..self.nodes.len() {
            if !self.nodes[i].alive {
                continue;
            }
            let mut cmds = self.nodes[i].machine.tick(now);
            let round = (now + self.timing.retry_period - self.nodes[i].phase)
                .as_millis()
                .is_multiple_of(self.timing.retry_period.as_millis());
            if round {
                if self.nodes[i].reachable {
                    let local = self.local(i);
                    let obs = self.backend.observe();
                    cmds.extend(self.nodes[i].machine.observe(now, local, &obs));
                } else {
                    let local = self.local(i);
                    cmds.extend(self.nodes[i].machine.unreachable(now, local));
                }
            }
            let mut queue: std::collections::VecDeque<Command> = cmds.into();
            while let Some(cmd) = queue.pop_front() {
                let more = self.execute(i, cmd);
                queue.extend(more);
            }
        }
        self.replicate();
        let p = self.primaries();
        assert!(p.len() <= 1, "two primaries at {:?}: {p:?}", self.now);
    }

    /// Node `i`'s local facts: its role, epoch and position (the epoch of its last record).
    fn local(&self, i: usize) -> Local {
        let n = &self.nodes[i];
        Local {
            role: n.role,
            epoch: n.epoch,
            position: Position {
                last_epoch: n.log.last().copied().unwrap_or(0),
                next_seq: n.log.len() as u64,
            },
        }
    }

    fn execute(&mut self, i: usize, cmd: Command) -> Vec<Command> {
        let now = self.now;
        let reachable = self.nodes[i].reachable;
        let name = self.nodes[i].name.clone();
        match cmd {
            Command::Write {
                epoch,
                expected,
                acquire: _,
            } => {
                let outcome = if !reachable {
                    WriteOutcome::Failed
                } else if self.backend.version.to_string() != expected {
                    WriteOutcome::Conflict
                } else {
                    assert!(epoch >= self.backend.epoch, "the lease epoch went back");
                    self.backend.holder = Some(name);
                    self.backend.epoch = epoch;
                    self.backend.version += 1;
                    WriteOutcome::Written(self.backend.version.to_string())
                };
                self.nodes[i].machine.written(now, now, outcome)
            }
            Command::Advertise { position } => {
                if reachable {
                    let v = self.backend.candidates.get(&name).map_or(0, |c| c.1) + 1;
                    self.backend.candidates.insert(name, (position, v));
                }
                Vec::new()
            }
            Command::Fence => {
                let n = &mut self.nodes[i];
                n.role = Role::Replica;
                n.fences.push(now);
                Vec::new()
            }
            Command::Promote { epoch } => {
                assert!(
                    epoch > self.max_epoch,
                    "epoch {epoch} after {}",
                    self.max_epoch
                );
                self.max_epoch = epoch;
                let acked = self.acked.clone();
                let n = &mut self.nodes[i];
                assert!(
                    n.log.starts_with(&acked),
                    "{} promoted without every acknowledged record ({} of {})",
                    n.name,
                    n.log.len(),
                    acked.len()
                );
                n.role = Role::Primary;
                n.epoch = epoch;
                n.promotions.push((now, epoch));
                Vec::new()
            }
        }
    }

    /// The primary appends one record per step; replicas copy; one replica acknowledges.
    fn replicate(&mut self) {
        let Some(p) = self
            .nodes
            .iter()
            .position(|n| n.alive && n.role == Role::Primary)
        else {
            return;
        };
        let epoch = self.nodes[p].epoch;
        self.nodes[p].log.push(epoch);
        let plog = self.nodes[p].log.clone();
        let mut best = 0;
        for (i, n) in self.nodes.iter_mut().enumerate() {
            if i == p || !n.alive || n.epoch > epoch {
                continue;
            }
            // Keep the common prefix (a newer epoch moves the rest aside), then copy.
            let common = n.log.iter().zip(&plog).take_while(|(a, b)| a == b).count();
            n.log.truncate(common);
            let to = (common + n.copy_rate).min(plog.len());
            n.log.extend_from_slice(&plog[common..to]);
            n.epoch = epoch;
            best = best.max(n.log.len());
        }
        if best > self.acked.len() {
            self.acked = plog[..best].to_vec();
        }
    }
}

#[test]
fn the_creator_takes_the_first_lease_and_keeps_it() {
    let mut sim = Sim::new(&["a", "b", "c"]);
    sim.run_for(Duration::from_secs(30));
    assert_eq!(sim.backend.holder.as_deref(), Some("a"));
    assert_eq!(sim.backend.epoch, 1);
    assert_eq!(sim.primaries(), ["a"]);
    for n in &sim.nodes {
        assert!(n.fences.is_empty() && n.promotions.is_empty(), "{}", n.name);
    }
    assert!(sim.acked.len() > 500);
}

#[test]
fn a_partitioned_primary_fences_before_the_most_up_to_date_replica_takes_over() {
    let mut sim = Sim::new(&["a", "b", "c"]);
    // b lags (copies one record per step, behind the primary's one append per step + backlog):
    // c is the most up-to-date replica although its name sorts after b's.
    sim.node("b").copy_rate = 1;
    sim.run_for(Duration::from_secs(1));
    sim.node("b").log.clear();
    sim.run_for(Duration::from_secs(20));
    let cut = sim.now;
    sim.node("a").reachable = false;
    sim.run_for(Duration::from_secs(20));
    let a = &sim.nodes[0];
    let fenced = a.fences[0];
    let c = &sim.nodes[2];
    let (promoted, epoch) = c.promotions[0];
    assert_eq!(epoch, 2);
    assert!(fenced < promoted, "fence {fenced:?} promotion {promoted:?}");
    assert!(fenced <= cut + sim.timing.renew_deadline);
    let limit = sim.timing.lease_duration + sim.timing.retry_period * 2;
    assert!(
        promoted - cut <= limit,
        "new primary after {:?}",
        promoted - cut
    );
    assert!(
        sim.nodes[1].promotions.is_empty(),
        "the lagging replica took the lease"
    );

    // a comes back: it stays a replica and converges to c's log.
    sim.node("a").reachable = true;
    sim.run_for(Duration::from_secs(20));
    assert_eq!(sim.primaries(), ["c"]);
    assert_eq!(sim.backend.holder.as_deref(), Some("c"));
    let (a, c) = (&sim.nodes[0], &sim.nodes[2]);
    assert!(c.log.starts_with(&a.log[..a.log.len().saturating_sub(10)]));
    assert_eq!(a.role, Role::Replica);
    assert_eq!(a.epoch, 2);
}

#[test]
fn a_dead_primary_is_replaced_within_the_lease_duration_and_rejoins_as_a_replica() {
    let mut sim = Sim::new(&["a", "b", "c"]);
    sim.run_for(Duration::from_secs(15));
    let cut = sim.now;
    sim.node("a").alive = false;
    sim.run_for(Duration::from_secs(15));
    let promoted: Vec<_> = sim
        .nodes
        .iter()
        .flat_map(|n| n.promotions.clone())
        .collect();
    assert_eq!(promoted.len(), 1, "{promoted:?}");
    let limit = sim.timing.lease_duration + sim.timing.retry_period * 2;
    assert!(promoted[0].0 - cut <= limit, "{:?}", promoted[0].0 - cut);

    // a restarts with a fresh machine; its state file still says primary of epoch 1.
    let timing = sim.timing;
    let a = sim.node("a");
    a.machine = Election::new("a", timing);
    a.alive = true;
    sim.run_for(Duration::from_secs(1) + STEP);
    assert_eq!(
        sim.nodes[0].role,
        Role::Replica,
        "a fenced itself at restart"
    );
    sim.run_for(Duration::from_secs(20));
    assert_eq!(sim.primaries().len(), 1);
    assert!(sim.nodes[0].promotions.is_empty());
}

#[test]
fn a_holder_restarted_within_its_lease_resumes_the_same_epoch() {
    let mut sim = Sim::new(&["a", "b", "c"]);
    sim.run_for(Duration::from_secs(5));
    let timing = sim.timing;
    let a = sim.node("a");
    a.machine = Election::new("a", timing);
    sim.run_for(Duration::from_secs(20));
    assert_eq!(sim.backend.holder.as_deref(), Some("a"));
    assert_eq!(sim.backend.epoch, 1);
    assert!(
        sim.nodes
            .iter()
            .all(|n| n.fences.is_empty() && n.promotions.is_empty())
    );
}

#[test]
fn a_lost_compare_and_swap_fences_the_holder() {
    let timing = Timing::default();
    let mut e = Election::new("a", timing);
    let local = Local {
        role: Role::Primary,
        epoch: 1,
        position: Position {
            last_epoch: 1,
            next_seq: 10,
        },
    };
    let t = Duration::from_secs;
    let obs = Observation::default();
    let cmds = e.observe(t(0), local, &obs);
    assert_eq!(
        cmds,
        [Command::Write {
            epoch: 1,
            expected: String::new(),
            acquire: true
        }]
    );
    assert!(
        e.written(t(0), t(0), WriteOutcome::Written("1".into()))
            .is_empty()
    );
    assert_eq!(e.leading(), Some(1));
    assert_eq!(e.valid_until(), Some(timing.renew_deadline));
    let held = Observation {
        lease: LeaseView {
            holder: Some("a".into()),
            epoch: 1,
            token: "1".into(),
        },
        candidates: Vec::new(),
    };
    let cmds = e.observe(t(1), local, &held);
    assert!(matches!(cmds[..], [Command::Write { acquire: false, .. }]));
    assert_eq!(
        e.written(t(1), t(1), WriteOutcome::Conflict),
        [Command::Fence]
    );
    assert_eq!(e.leading(), None);
}

#[test]
fn failed_renewals_fence_at_the_renew_deadline_counted_from_the_last_send() {
    let timing = Timing::default();
    let mut e = Election::new("a", timing);
    let local = Local {
        role: Role::Primary,
        epoch: 3,
        position: Position {
            last_epoch: 3,
            next_seq: 10,
        },
    };
    let ms = Duration::from_millis;
    let held = |token: &str| Observation {
        lease: LeaseView {
            holder: Some("a".into()),
            epoch: 3,
            token: token.into(),
        },
        candidates: Vec::new(),
    };
    // Resume: no promotion, same epoch.
    let cmds = e.observe(ms(0), local, &held("7"));
    assert!(matches!(
        cmds[..],
        [Command::Write {
            epoch: 3,
            acquire: false,
            ..
        }]
    ));
    // Sent at 100 ms, answered at 900 ms: the deadline counts from the send.
    assert!(
        e.written(ms(900), ms(100), WriteOutcome::Written("8".into()))
            .is_empty()
    );
    assert_eq!(e.valid_until(), Some(ms(100) + timing.renew_deadline));
    for s in 1..6 {
        assert!(e.unreachable(ms(s * 1000), local).is_empty());
    }
    assert_eq!(e.tick(ms(6099)), []);
    assert_eq!(e.tick(ms(6100)), [Command::Fence]);
    assert!(e.tick(ms(7000)).is_empty());
}

#[test]
fn a_primary_that_cannot_confirm_its_lease_at_start_fences_after_the_renew_deadline() {
    let timing = Timing::default();
    let mut e = Election::new("a", timing);
    let local = Local {
        role: Role::Primary,
        epoch: 2,
        position: Position {
            last_epoch: 2,
            next_seq: 5,
        },
    };
    assert!(e.unreachable(Duration::ZERO, local).is_empty());
    assert!(e.unreachable(Duration::from_secs(5), local).is_empty());
    assert_eq!(
        e.unreachable(timing.renew_deadline, local),
        [Command::Fence]
    );
    let replica = Local {
        role: Role::Replica,
        ..local
    };
    assert!(e.unreachable(Duration::from_secs(60), replica).is_empty());
}

#[test]
fn timing_rules() {
    assert!(Timing::default().check().is_ok());
    let bad = Timing {
        lease_duration: Duration::from_secs(6),
        ..Timing::default()
    };
    assert!(bad.check().unwrap_err().contains("lease_duration"));
    let bad = Timing {
        renew_deadline: Duration::from_secs(1),
        ..Timing::default()
    };
    assert!(bad.check().unwrap_err().contains("renew_deadline"));
}

/// The schedule the in-process simulation found (repliq-check, seed 540): an old primary back
/// from a pause holds more records than the node that wrote the newer epoch, but they are
/// unacknowledged leftovers of its older term. Compared by record count alone it would win and
/// the newer epoch's acknowledged records would be set aside; the epoch of the last record
/// decides first.
#[test]
fn a_newer_last_epoch_beats_more_records_of_an_older_one() {
    let timing = Timing::default();
    let t = Duration::from_secs;
    let expired = Observation {
        lease: LeaseView {
            holder: Some("gone".into()),
            epoch: 2,
            token: "9".into(),
        },
        candidates: vec![
            CandidateView {
                node: "old".into(),
                position: Position {
                    last_epoch: 1,
                    next_seq: 120,
                },
                token: "1".into(),
            },
            CandidateView {
                node: "new".into(),
                position: Position {
                    last_epoch: 2,
                    next_seq: 105,
                },
                token: "1".into(),
            },
        ],
    };
    let replica = |last_epoch, next_seq| Local {
        role: Role::Replica,
        epoch: 2,
        position: Position {
            last_epoch,
            next_seq,
        },
    };
    // The candidates advertise again (a new token), the lease record does not change.
    let mut again = expired.clone();
    for c in &mut again.candidates {
        c.token = "2".into();
    }
    let acquires = |e: &mut Election, local: Local| {
        // Watch for a lease duration, then look again.
        e.observe(t(0), local, &expired);
        e.observe(timing.lease_duration + t(1), local, &again)
            .iter()
            .any(|c| matches!(c, Command::Write { acquire: true, .. }))
    };
    assert!(
        !acquires(&mut Election::new("old", timing), replica(1, 120)),
        "more records of an older epoch took the lease"
    );
    assert!(
        acquires(&mut Election::new("new", timing), replica(2, 105)),
        "the newest epoch's copy did not take the lease"
    );
}
