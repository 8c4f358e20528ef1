//! Replication run inside the producer's process (no daemon): the seed's
//! `configure_replication(primary, secondaries, mode)`, and the wait of synchronous producers.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{PrimaryOptions, ReplicaAddr, ReplicationMode, run_primary};
use crate::journal::{Journal, notify};
use crate::{Message, Queue, QueueError, Result};

/// A queue that can replicate itself: the seed's interface.
pub trait ReplicatedQueue<T: Message>: Queue<T> {
    /// Starts replicating this queue from this process, which acts as node `primary`, to the
    /// `secondaries` (each `host:port`, or `name=host:port`), each running a replica service
    /// (`repliqd`). In [`ReplicationMode::Synchronous`], `enqueue` returns only after every
    /// secondary acknowledged the message (or fails with [`QueueError::Replication`] after the
    /// acknowledgement timeout, 5 s). Replication stops, after letting the replicas catch up,
    /// when the queue handle is dropped.
    ///
    /// # Errors
    ///
    /// [`QueueError::InvalidConfig`] for an empty primary name, no secondaries or a malformed
    /// address; [`QueueError::Replication`] if the queue is a replica here.
    fn configure_replication(
        &mut self,
        primary: &str,
        secondaries: &[&str],
        mode: ReplicationMode,
    ) -> Result<()>;
}

/// Parses `host:port` or `name=host:port`.
pub(crate) fn parse_secondary(s: &str) -> Result<ReplicaAddr> {
    let (name, address) = match s.split_once('=') {
        Some((n, a)) => (n.trim(), a.trim()),
        None => (s.trim(), s.trim()),
    };
    let valid = address
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p != 0));
    if name.is_empty() || !valid {
        return Err(QueueError::InvalidConfig(format!(
            "secondary `{s}`: expected `host:port` or `name=host:port`"
        )));
    }
    Ok(ReplicaAddr {
        name: name.to_owned(),
        address: address.to_owned(),
    })
}

/// Replication running on a thread of its own, stopped (and drained) on drop.
#[derive(Debug)]
pub(crate) struct Embedded {
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Embedded {
    pub(crate) fn start(
        dir: PathBuf,
        primary: &str,
        secondaries: &[&str],
        mode: ReplicationMode,
    ) -> Result<Embedded> {
        if primary.trim().is_empty() {
            return Err(QueueError::InvalidConfig(
                "configure_replication: the primary's name must not be empty".into(),
            ));
        }
        if secondaries.is_empty() {
            return Err(QueueError::InvalidConfig(
                "configure_replication: at least one secondary is needed".into(),
            ));
        }
        let replicas = secondaries
            .iter()
            .map(|s| parse_secondary(s))
            .collect::<Result<Vec<_>>>()?;
        let options = PrimaryOptions::new(primary, replicas, mode);
        // Write the state now, so that `enqueue` sees the mode as soon as this returns.
        let mut state = super::ReplicationState::load(&dir)?;
        state.check_writable(&dir)?;
        state.synchronous = mode == ReplicationMode::Synchronous;
        state.ack_timeout_ms = u64::try_from(options.ack_timeout.as_millis()).unwrap_or(u64::MAX);
        state.primary = Some(primary.to_owned());
        state.store(&dir)?;

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| QueueError::io("starting the replication runtime", e))?;
        let (stop, stop_rx) = watch::channel(false);
        let thread = std::thread::Builder::new()
            .name("repliq-replication".into())
            .spawn(move || {
                if let Err(e) = runtime.block_on(run_primary(dir.clone(), options, stop_rx)) {
                    tracing::error!(queue = %dir.display(), error = %e, "replication stopped");
                }
            })
            .map_err(|e| QueueError::io("starting the replication thread", e))?;
        Ok(Embedded {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Waits until the replicas acknowledged record `seq` (the primary publishes the k-of-n
/// acknowledged sequence in the meta file), spinning briefly, then sleeping on its futex.
///
/// # Errors
///
/// [`QueueError::Replication`] if `timeout` passes first. The record stays written locally.
pub(crate) fn wait_acked(journal: &Arc<Journal>, seq: u64, timeout: Duration) -> Result<()> {
    let meta = &journal.meta;
    let acked = || meta.acked().load(Ordering::Acquire) > seq;
    if acked() {
        return Ok(());
    }
    let deadline = Instant::now() + timeout;
    let done = notify::wait_until(
        meta.ack_notify(),
        meta.ack_waiters(),
        Some(deadline),
        || Ok(acked().then_some(())),
    )?;
    done.ok_or_else(|| {
        QueueError::Replication(format!(
            "message {seq} of {} is written locally but was not acknowledged by the replicas \
             within {timeout:?} (acknowledged up to {})",
            journal.dir.display(),
            meta.acked().load(Ordering::Acquire)
        ))
    })
}
