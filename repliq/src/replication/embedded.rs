//! Replication run inside the producer's process (no daemon): the seed's
//! `configure_replication(primary, secondaries, mode)`, and the wait of synchronous producers.

use std::path::PathBuf;

use tokio::sync::watch;

use super::{PrimaryOptions, ReplicaAddr, ReplicationMode, run_primary};
use crate::{Message, PersistentQueue, QueueError, ReplicatedQueueImpl, Result};

/// A queue that can replicate itself: the seed's interface.
pub trait ReplicatedQueue<T: Message + Send + Sync>: PersistentQueue<T> {
    /// Starts replicating this queue from this process, which acts as node `primary_node`, to
    /// the `secondary_nodes` (each `host:port`, or `name=host:port`), each running a replica
    /// service (`repliqd`). In [`ReplicationMode::Synchronous`], `enqueue` (on any handle of the
    /// queue, in any process) returns only after every secondary acknowledged the message, or
    /// fails with [`ReplicationError::AckTimeout`](crate::ReplicationError::AckTimeout) after
    /// the acknowledgement timeout (5 s; see [`ReplicatedQueueImpl::configure_replication_with`]).
    /// Replication stops, after letting the replicas catch up, when the last clone of the handle
    /// is dropped; the queue then no longer waits for acknowledgements.
    ///
    /// # Errors
    ///
    /// [`QueueError::InvalidConfig`] for an empty primary name, no secondaries or a malformed
    /// address; [`QueueError::Replication`] if the queue is a replica here.
    fn configure_replication(
        &mut self,
        primary_node: &str,
        secondary_nodes: Vec<&str>,
        replication_mode: ReplicationMode,
    ) -> Result<()>;
}

impl<T: Message + Send + Sync + 'static> ReplicatedQueue<T> for ReplicatedQueueImpl<T> {
    fn configure_replication(
        &mut self,
        primary_node: &str,
        secondary_nodes: Vec<&str>,
        replication_mode: ReplicationMode,
    ) -> Result<()> {
        let options = PrimaryOptions::new(primary_node, Vec::new(), replication_mode);
        self.configure_replication_with(primary_node, &secondary_nodes, options)
    }
}

impl<T: Message + Send + Sync + 'static> ReplicatedQueueImpl<T> {
    /// [`ReplicatedQueue::configure_replication`] with every option of [`PrimaryOptions`]
    /// (acknowledgement timeout, required acknowledgements, frame size, ...); the node name and
    /// the replicas come from `primary_node` and `secondary_nodes`, and `required_acks` is
    /// capped at the number of secondaries (0 means all of them).
    ///
    /// # Errors
    ///
    /// As [`ReplicatedQueue::configure_replication`].
    pub fn configure_replication_with(
        &mut self,
        primary_node: &str,
        secondary_nodes: &[&str],
        options: PrimaryOptions,
    ) -> Result<()> {
        // Stop a previous configuration first (it drains), then start the new one.
        drop(self.attach(None));
        let embedded = EmbeddedReplication::start(
            self.journal().dir.clone(),
            primary_node,
            secondary_nodes,
            options,
        )?;
        self.attach(Some(Box::new(embedded)));
        Ok(())
    }
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
    Ok(ReplicaAddr::new(name, address))
}

/// Replication of one queue run on a thread of this process (no daemon), stopped (after letting
/// the replicas catch up) when dropped. [`ReplicatedQueue::configure_replication`] keeps one
/// with the handle; a [`JournalQueue`](crate::JournalQueue) user keeps it beside the handle:
///
/// ```no_run
/// # use repliq::{JournalQueue, ReplicationMode};
/// # use repliq::replication::{EmbeddedReplication, PrimaryOptions};
/// # fn main() -> repliq::Result<()> {
/// let mut queue = JournalQueue::<String>::new("/var/lib/repliq/orders", 1 << 20)?;
/// let options = PrimaryOptions::new("node-a", Vec::new(), ReplicationMode::Synchronous);
/// let _replication =
///     EmbeddedReplication::start(queue.path(), "node-a", &["node-b=10.0.0.2:31337"], options)?;
/// queue.enqueue(&"acknowledged by node-b".to_string())?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct EmbeddedReplication {
    dir: PathBuf,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EmbeddedReplication {
    /// Starts replicating the queue in `dir` as node `primary` to `secondaries` (`host:port` or
    /// `name=host:port`) with `options` (whose `node` and `replicas` are replaced by `primary`
    /// and `secondaries`; in synchronous mode `required_acks` 0 means all secondaries, and it is
    /// capped at their number). The policy is published in the queue's meta file before this
    /// returns, so every producer of the queue obeys it from then on.
    ///
    /// # Errors
    ///
    /// As [`ReplicatedQueue::configure_replication`].
    pub fn start(
        dir: impl AsRef<std::path::Path>,
        primary: &str,
        secondaries: &[&str],
        mut options: PrimaryOptions,
    ) -> Result<EmbeddedReplication> {
        let dir = dir.as_ref().to_path_buf();
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
        // Synchronous: `required_acks` of the secondaries (0, the default, means all of them).
        options.required_acks = match options.mode {
            ReplicationMode::Asynchronous => 0,
            ReplicationMode::Synchronous if options.required_acks == 0 => replicas.len(),
            ReplicationMode::Synchronous => options.required_acks.min(replicas.len()),
        };
        options.node = primary.to_owned();
        options.replicas = replicas;
        // Publish the policy now, so that every `enqueue` obeys it as soon as this returns.
        let mut state = super::ReplicationState::load(&dir)?;
        state.check_writable(&dir)?;
        state.synchronous = options.required_acks > 0;
        state.required_acks = u32::try_from(options.required_acks).unwrap_or(u32::MAX);
        state.ack_timeout_ms = u64::try_from(options.ack_timeout.as_millis()).unwrap_or(u64::MAX);
        state.primary = Some(primary.to_owned());
        state.store(&dir)?;

        let thread_dir = dir.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| QueueError::io("starting the replication runtime", e))?;
        let (stop, stop_rx) = watch::channel(false);
        let thread = std::thread::Builder::new()
            .name("repliq-replication".into())
            .spawn(move || {
                let dir = thread_dir;
                if let Err(e) = runtime.block_on(run_primary(dir.clone(), options, stop_rx)) {
                    tracing::error!(queue = %dir.display(), error = %e, "replication stopped");
                }
            })
            .map_err(|e| QueueError::io("starting the replication thread", e))?;
        Ok(EmbeddedReplication {
            dir,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EmbeddedReplication {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // Replication ended: later producers must not wait for acknowledgements nobody sends.
        if let Ok(mut state) = super::ReplicationState::load(&self.dir)
            && state.role == super::Role::Primary
            && state.synchronous
        {
            state.synchronous = false;
            if let Err(e) = state.store(&self.dir) {
                tracing::warn!(queue = %self.dir.display(), error = %e, "could not clear the synchronous policy");
            }
        }
    }
}
