//! Runs one [`Election`] per queue under the persistence path against a [`LeaseBackend`], and
//! carries out its commands on the queue: a fence stores the replica role (producers are fenced
//! at their next `enqueue`), a promotion makes the queue the primary of the lease's epoch.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use repliq::replication::{QueueLease, ReplicationState};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::backend::LeaseBackend;
use super::machine::{Command, Election, Local, Position, Timing, WriteOutcome};
use crate::metrics::ElectionMetrics;
use crate::telemetry::span;
use tracing::Instrument as _;

/// Local facts about the queue in `dir`.
///
/// # Errors
///
/// A sentence if the queue cannot be read.
pub fn local(dir: &Path) -> Result<Local, String> {
    let state = ReplicationState::load(dir).map_err(|e| e.to_string())?;
    let info = repliq::inspect(dir).map_err(|e| e.to_string())?;
    let next_seq = info.last_seq.map_or(info.first_seq, |s| s + 1);
    Ok(Local {
        role: state.role,
        epoch: state.epoch,
        position: Position {
            // The epoch that wrote the last record, from the queue's epoch history.
            last_epoch: state.lineage().last_epoch_below(next_seq),
            next_seq,
        },
    })
}

/// Stops producers: the queue becomes a replica (of whoever the next lease holder is).
///
/// # Errors
///
/// The queue's state cannot be stored.
pub fn fence(dir: &Path) -> Result<(), String> {
    ReplicationState::demote(dir)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Makes the queue the primary of `epoch` (from the next sequence number it does not hold).
///
/// # Errors
///
/// The queue's state cannot be read or stored.
pub fn promote(dir: &Path, epoch: u64) -> Result<ReplicationState, String> {
    ReplicationState::promote_to_epoch(dir, epoch).map_err(|e| e.to_string())
}

/// Runs blocking file I/O on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("a blocking task failed: {e}"))?
}

/// Runs `fut` unless `deadline` comes first (`None`).
async fn before<T>(deadline: Option<Instant>, fut: impl Future<Output = T>) -> Option<T> {
    match deadline {
        Some(d) => tokio::select! {
            v = fut => Some(v),
            () = tokio::time::sleep_until(d) => None,
        },
        None => Some(fut.await),
    }
}

struct QueueElection<B> {
    dir: PathBuf,
    queue: String,
    node: String,
    backend: Arc<B>,
    machine: Election,
    timing: Timing,
    origin: Instant,
    unreachable_logged: bool,
    metrics: ElectionMetrics,
    /// Extended to the lease's validity after every round: the replication task acknowledges
    /// writes only while it holds.
    authority: repliq::replication::Authority,
    /// The same validity in the queue's meta file, where every local producer checks it before
    /// it writes (`None` until the meta file could be opened).
    lease: Option<QueueLease>,
    /// The queue's epoch on this node at the last round (a span attribute).
    local_epoch: u64,
    /// The open `election.failover` span, from the lease write that takes it to the promotion.
    failover: Option<tracing::Span>,
}

impl<B: LeaseBackend> QueueElection<B> {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    fn deadline(&self) -> Option<Instant> {
        self.machine.valid_until().map(|v| self.origin + v)
    }

    /// One round; returns early with a fence if the renew deadline passes mid-round.
    async fn round(&mut self) {
        let mut cmds = self.machine.tick(self.now());
        let dir = self.dir.clone();
        let local = match blocking(move || local(&dir)).await {
            Ok(l) => {
                self.local_epoch = l.epoch;
                l
            }
            Err(e) => {
                tracing::warn!(queue = %self.queue, error = %e, "cannot read the queue; skipping its election round");
                self.execute(cmds).await;
                return;
            }
        };
        let timeout = self.timing.retry_period;
        let observed = before(
            self.deadline(),
            tokio::time::timeout(timeout, self.backend.observe(&self.queue)),
        )
        .await;
        match observed {
            Some(Ok(Ok(obs))) => {
                self.metrics.backend_up.get_or_create(&self.labels()).set(1);
                if self.unreachable_logged {
                    tracing::info!(backend = %self.backend.describe(), queue = %self.queue, "election backend reachable again");
                    self.unreachable_logged = false;
                }
                cmds.extend(self.machine.observe(self.now(), local, &obs));
            }
            other => {
                self.metrics.backend_up.get_or_create(&self.labels()).set(0);
                if !self.unreachable_logged {
                    let why = match other {
                        Some(Ok(Err(e))) => e,
                        Some(Err(_)) => format!(
                            "{} did not answer within {timeout:?}",
                            self.backend.describe()
                        ),
                        _ => "the renew deadline passed while reading the lease".into(),
                    };
                    tracing::warn!(queue = %self.queue, problem = %why, "cannot read the lease; no failover decisions until it can be read");
                    self.unreachable_logged = true;
                }
                cmds.extend(self.machine.unreachable(self.now(), local));
            }
        }
        self.execute(cmds).await;
        let leading = self.machine.leading();
        let labels = self.labels();
        self.metrics
            .leader
            .get_or_create(&labels)
            .set(i64::from(leading.is_some()));
        let epoch = leading.unwrap_or(local.epoch);
        self.metrics
            .epoch
            .get_or_create(&labels)
            .set(i64::try_from(epoch).unwrap_or(i64::MAX));
    }

    fn labels(&self) -> crate::metrics::QueueLabels {
        ElectionMetrics::queue(&self.queue)
    }

    async fn execute(&mut self, cmds: Vec<Command>) {
        let mut queue: std::collections::VecDeque<Command> = cmds.into();
        while let Some(cmd) = queue.pop_front() {
            match cmd {
                Command::Write {
                    epoch,
                    expected,
                    acquire,
                } => {
                    let sent = self.now();
                    // A takeover is traced from its lease write to the promotion; renewals
                    // (every retry period) are counted, not traced.
                    let write_span = acquire.then(|| {
                        let failover = tracing::info_span!(
                            parent: None, span::FAILOVER,
                            queue = %self.queue, node = %self.node, epoch,
                            previous_epoch = self.local_epoch,
                            outcome = tracing::field::Empty,
                        );
                        let write = tracing::info_span!(
                            parent: &failover, span::LEASE_ACQUIRE,
                            queue = %self.queue, node = %self.node, epoch,
                            backend = %self.backend.describe(),
                            outcome = tracing::field::Empty,
                        );
                        self.failover = Some(failover);
                        write
                    });
                    let write = tokio::time::timeout(
                        self.timing.retry_period,
                        self.backend
                            .write(&self.queue, &self.node, epoch, &expected),
                    );
                    let write = before(self.deadline(), write)
                        .instrument(write_span.clone().unwrap_or_else(tracing::Span::none));
                    let outcome = match write.await {
                        Some(Ok(o)) => o,
                        _ => WriteOutcome::Failed,
                    };
                    if let Some(write_span) = write_span {
                        let word = match &outcome {
                            WriteOutcome::Written(_) => "written",
                            WriteOutcome::Conflict => "conflict",
                            WriteOutcome::Failed => "unreachable",
                        };
                        write_span.record("outcome", word);
                        if !matches!(outcome, WriteOutcome::Written(_))
                            && let Some(failover) = self.failover.take()
                        {
                            failover.record("outcome", word);
                        }
                    }
                    match &outcome {
                        WriteOutcome::Written(_) if !acquire => {
                            self.metrics.renewals.get_or_create(&self.labels()).inc();
                        }
                        WriteOutcome::Written(_) => {}
                        WriteOutcome::Conflict => {
                            self.metrics
                                .failures
                                .get_or_create(&ElectionMetrics::failure(&self.queue, "conflict"))
                                .inc();
                        }
                        WriteOutcome::Failed => {
                            self.metrics
                                .failures
                                .get_or_create(&ElectionMetrics::failure(
                                    &self.queue,
                                    "unreachable",
                                ))
                                .inc();
                        }
                    }
                    let next = self.machine.written(self.now(), sent, outcome);
                    if !next.iter().any(|c| matches!(c, Command::Promote { .. }))
                        && let Some(failover) = self.failover.take()
                    {
                        // The lease was taken by a node that already was the primary.
                        failover.record("outcome", "already_primary");
                    }
                    queue.extend(next);
                }
                Command::Advertise { position } => {
                    let adv = tokio::time::timeout(
                        self.timing.retry_period,
                        self.backend.advertise(&self.queue, &self.node, position),
                    );
                    match before(self.deadline(), adv).await {
                        Some(Ok(Ok(()))) => {}
                        Some(Ok(Err(e))) => {
                            tracing::debug!(queue = %self.queue, error = %e, "cannot advertise");
                        }
                        _ => {}
                    }
                }
                Command::Fence => match self
                    .blocking_on_dir(fence)
                    .instrument(tracing::info_span!(
                        parent: None, span::FENCE,
                        queue = %self.queue, node = %self.node, epoch = self.local_epoch,
                    ))
                    .await
                {
                    Ok(()) => {
                        self.metrics.fences.get_or_create(&self.labels()).inc();
                        tracing::warn!(
                        queue = %self.queue,
                        "not the lease holder (lost, expired or never held): fenced, enqueues are refused here"
                        );
                    }
                    Err(e) => {
                        tracing::error!(queue = %self.queue, error = %e, "cannot fence the queue")
                    }
                },
                Command::Promote { epoch } => {
                    let failover = self.failover.take();
                    let promote_span = tracing::info_span!(
                        parent: failover.as_ref().and_then(tracing::Span::id), span::PROMOTE,
                        queue = %self.queue, node = %self.node, epoch,
                        epoch_start = tracing::field::Empty,
                    );
                    let promoted = self
                        .blocking_on_dir(move |dir| promote(dir, epoch))
                        .instrument(promote_span.clone())
                        .await;
                    let outcome = if promoted.is_ok() {
                        "primary"
                    } else {
                        "failed"
                    };
                    if let Some(failover) = &failover {
                        failover.record("outcome", outcome);
                    }
                    if let Ok(s) = &promoted {
                        promote_span.record("epoch_start", s.epoch_start);
                    }
                    match promoted {
                        Ok(s) => {
                            self.metrics.takeovers.get_or_create(&self.labels()).inc();
                            tracing::info!(
                                queue = %self.queue, epoch = s.epoch, epoch_start = s.epoch_start,
                                "acquired the lease: primary"
                            );
                        }
                        Err(e) => {
                            tracing::error!(queue = %self.queue, error = %e, "cannot promote the queue")
                        }
                    }
                }
            }
        }
        // A deadline that passed during the commands fences now.
        let late = self.machine.tick(self.now());
        if !late.is_empty() {
            Box::pin(self.execute(late)).await;
        }
        self.publish_validity().await;
    }

    /// Extends (or revokes) the replication task's authority and the producers' lease word to the
    /// lease's validity.
    async fn publish_validity(&mut self) {
        let deadline = self.deadline().map(Instant::into_std);
        self.authority.grant_until(deadline);
        if self.lease.is_none() {
            match self
                .blocking_on_dir(|dir| QueueLease::open(dir).map_err(|e| e.to_string()))
                .await
            {
                Ok(lease) => self.lease = Some(lease),
                Err(e) => {
                    tracing::warn!(queue = %self.queue, error = %e, "cannot open the queue's lease word; local producers are not limited by the lease until it opens");
                }
            }
        }
        if let Some(lease) = &self.lease {
            lease.grant_until(deadline);
        }
    }

    async fn blocking_on_dir<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Path) -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        let dir = self.dir.clone();
        blocking(move || f(&dir)).await
    }

    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        // Every series exists from the start (at 0), so rates and alerts see the first event.
        let labels = self.labels();
        drop(self.metrics.renewals.get_or_create(&labels));
        drop(self.metrics.takeovers.get_or_create(&labels));
        drop(self.metrics.fences.get_or_create(&labels));
        for reason in ["conflict", "unreachable"] {
            drop(
                self.metrics
                    .failures
                    .get_or_create(&ElectionMetrics::failure(&self.queue, reason)),
            );
        }
        // Producers wait for the first round: a lease word left by an earlier run of the daemon,
        // or none at all, must not let them write before this node knows it holds the lease.
        self.publish_validity().await;
        let mut interval = tokio::time::interval(self.timing.retry_period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = self.deadline();
            let round = tokio::select! {
                _ = interval.tick() => true,
                () = async { tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)).await }, if deadline.is_some() => false,
                _ = stop.wait_for(|s| *s) => return,
            };
            if round {
                self.round().await;
            } else {
                let cmds = self.machine.tick(self.now());
                self.execute(cmds).await;
            }
        }
    }
}

/// Elects a primary for every queue under `root` (looking for new queues every retry period)
/// until `stop`. The queues' elections run in a [`JoinSet`]: one that ends before `stop` (a
/// panic) ends this task with an error, which stops the daemon (see [`crate::supervise`]).
///
/// # Errors
///
/// A sentence naming the queue whose election stopped.
pub async fn run<B: LeaseBackend>(
    backend: Arc<B>,
    node: String,
    root: PathBuf,
    timing: Timing,
    authorities: super::Authorities,
    stop: watch::Receiver<bool>,
    metrics: ElectionMetrics,
) -> Result<(), String> {
    tracing::info!(backend = %backend.describe(), "automatic failover by lease");
    let mut running = std::collections::BTreeSet::new();
    let mut elections = JoinSet::new();
    let mut interval = tokio::time::interval(timing.retry_period);
    let mut stop_wait = stop.clone();
    let origin = Instant::now();
    let mut scanner = Some(crate::scan::QueueScanner::new(root));
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            Some(ended) = elections.join_next() => {
                let what = match ended {
                    Ok(queue) => format!("the election of queue {queue} returned"),
                    Err(e) => format!("an election task stopped: {e}"),
                };
                return Err(what);
            }
            _ = stop_wait.wait_for(|s| *s) => break,
        }
        let Some(mut s) = scanner.take() else {
            break;
        };
        let (s, queues) = blocking(move || {
            let queues = s.scan();
            Ok((s, queues))
        })
        .await?;
        scanner = Some(s);
        for (dir, _) in queues {
            if running.contains(&dir) {
                continue;
            }
            let queue = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let election = QueueElection {
                dir: dir.clone(),
                queue: queue.clone(),
                node: node.clone(),
                backend: Arc::clone(&backend),
                machine: Election::new(node.clone(), timing),
                timing,
                origin,
                unreachable_logged: false,
                metrics: metrics.clone(),
                authority: authorities.of(&dir),
                lease: None,
                local_epoch: 0,
                failover: None,
            };
            let stop = stop.clone();
            elections.spawn(async move {
                election.run(stop).await;
                queue
            });
            running.insert(dir);
        }
    }
    while elections.join_next().await.is_some() {}
    Ok(())
}
