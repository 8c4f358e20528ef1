//! The node's refusals (`Refusal` of `client.proto`): a sentence naming what and where, and the
//! typed reason.

use std::path::Path;

use repliq::client::proto::{self, refusal::Reason};
use repliq::replication::{ReplicationState, Role};
use repliq::{QueueError, ReplicationError};

/// A refusal on its way to a client.
#[derive(Debug, Clone)]
pub struct Refusal(pub proto::Refusal);

impl Refusal {
    fn new(message: String, reason: Reason) -> Refusal {
        Refusal(proto::Refusal {
            message,
            reason: Some(reason),
        })
    }

    pub fn is_redirect(&self) -> bool {
        matches!(self.0.reason, Some(Reason::Redirect(_)))
    }

    pub fn is_internal(&self) -> bool {
        matches!(self.0.reason, Some(Reason::Internal(_)))
    }

    /// A redirect to the primary if the queue in `dir` is a replica here. The address is filled
    /// in by the service from discovery ([`Refusal::with_address`]).
    pub fn redirect_if_replica(dir: &Path) -> Option<Refusal> {
        let state = ReplicationState::load(dir).ok()?;
        (state.role == Role::Replica).then(|| Refusal::redirect(dir, state.primary, state.epoch))
    }

    fn redirect(dir: &Path, primary: Option<String>, epoch: u64) -> Refusal {
        let primary = primary.unwrap_or_default();
        Refusal::new(
            format!(
                "{} is a replica here (epoch {epoch}); its primary is {}",
                dir.display(),
                if primary.is_empty() {
                    "not known yet"
                } else {
                    &primary
                }
            ),
            Reason::Redirect(proto::Redirect {
                primary,
                address: String::new(),
                epoch,
            }),
        )
    }

    /// Fills in a redirect's address with `lookup(primary)`.
    pub fn with_address(mut self, lookup: impl Fn(&str) -> Option<String>) -> Refusal {
        if let Some(Reason::Redirect(r)) = self.0.reason.as_mut()
            && r.address.is_empty()
        {
            match lookup(&r.primary) {
                Some(address) => {
                    self.0.message = format!("{}, at {address}", self.0.message);
                    r.address = address;
                }
                None => {
                    self.0.message = format!(
                        "{} (its address is not known to this node's discovery)",
                        self.0.message
                    );
                }
            }
        }
        self
    }

    pub fn not_found(dir: &Path) -> Refusal {
        let queue = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Refusal::new(
            format!(
                "no queue {queue:?} on this node ({} does not exist)",
                dir.display()
            ),
            Reason::NotFound(proto::QueueNotFound { queue }),
        )
    }

    pub fn wrong_type(
        dir: &Path,
        queue_type: &str,
        queue_fingerprint: u64,
        client_type: &str,
        client_fingerprint: u64,
    ) -> Refusal {
        Refusal::new(
            format!(
                "{} holds `{queue_type}` (fingerprint {queue_fingerprint:#018x}), the client \
                 sends `{client_type}` (fingerprint {client_fingerprint:#018x})",
                dir.display()
            ),
            Reason::WrongType(proto::WrongType {
                queue_type: queue_type.to_owned(),
                queue_fingerprint,
                client_type: client_type.to_owned(),
                client_fingerprint,
            }),
        )
    }

    pub fn gap(producer: &str, expected: u64, got: u64) -> Refusal {
        Refusal::new(
            format!(
                "producer {producer:?}: the batch starts at sequence {got}, the next expected is \
                 {expected} (records {expected}..{got} are missing)"
            ),
            Reason::Gap(proto::SequenceGap { expected, got }),
        )
    }

    pub fn stale_epoch(producer: &str, newest: u64, got: u64) -> Refusal {
        Refusal::new(
            format!("producer {producer:?}: epoch {got} is older than its newest epoch {newest}"),
            Reason::StaleEpoch(proto::StaleProducerEpoch { newest, got }),
        )
    }

    pub fn ack_timeout(dir: &Path, queue_seq: u64) -> Refusal {
        Refusal::new(
            format!(
                "{}: the replicas did not acknowledge record {queue_seq} in time (it is written \
                 on the primary; retry the batch)",
                dir.display()
            ),
            Reason::AckTimeout(proto::AckTimeout { queue_seq }),
        )
    }

    /// `reason` as [`repliq::RawQueue::append_batch`] words it ("record N of the batch: ...").
    pub fn invalid_record(dir: &Path, reason: &str) -> Refusal {
        let index = reason
            .strip_prefix("record ")
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        Refusal::new(
            format!(
                "{}: {reason}; nothing of the batch was written",
                dir.display()
            ),
            Reason::InvalidRecord(proto::InvalidRecord { index }),
        )
    }

    pub fn bad_request(what: impl Into<String>) -> Refusal {
        Refusal::new(what.into(), Reason::BadRequest(proto::BadRequest {}))
    }

    pub fn superseded(queue: &str, consumer: &str) -> Refusal {
        Refusal::new(
            format!("consumer {consumer:?} of {queue:?}: a newer stream of the name took over"),
            Reason::Superseded(proto::Superseded {}),
        )
    }

    /// `identity` may not do `right` on `queue`; `why` says what is missing.
    pub fn permission_denied(identity: &str, queue: &str, right: &str, why: &str) -> Refusal {
        Refusal::new(
            format!("client {identity:?} may not {right} queue {queue:?}: {why}"),
            Reason::PermissionDenied(proto::PermissionDenied {
                identity: identity.to_owned(),
                queue: queue.to_owned(),
                right: right.to_owned(),
            }),
        )
    }

    pub fn internal(what: impl Into<String>) -> Refusal {
        Refusal::new(what.into(), Reason::Internal(proto::Internal {}))
    }

    /// A queue error: a replica or a fenced handle becomes a redirect, the rest internal.
    pub fn from_queue_error(dir: &Path, e: &QueueError) -> Refusal {
        match e {
            QueueError::Replication(
                ReplicationError::ReadOnlyReplica { .. } | ReplicationError::Fenced { .. },
            ) => {
                let state = ReplicationState::load(dir).ok();
                Refusal::redirect(
                    dir,
                    state.as_ref().and_then(|s| s.primary.clone()),
                    state.map_or(0, |s| s.epoch),
                )
            }
            QueueError::Replication(ReplicationError::AckTimeout { seq, .. }) => {
                Refusal::ack_timeout(dir, *seq)
            }
            other => Refusal::internal(format!("{}: {other}", dir.display())),
        }
    }
}
