//! The errors of the remote client.

use super::proto;

/// Why a node refused a stream or a batch (`Refusal` in `client.proto`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refused {
    /// The node is not the queue's primary; `address` is the primary's (empty if unknown).
    Redirect {
        /// The primary's node name.
        primary: String,
        /// Its gRPC address, `host:port`.
        address: String,
        /// The queue's epoch as the node knows it.
        epoch: u64,
    },
    /// The queue holds another message type.
    WrongType {
        /// The queue's type name and fingerprint.
        queue_type: String,
        /// The queue's fingerprint.
        queue_fingerprint: u64,
        /// What the client sent.
        client_type: String,
        /// The client's fingerprint.
        client_fingerprint: u64,
    },
    /// The batch does not follow the producer's last record.
    Gap {
        /// The next producer sequence the node expects.
        expected: u64,
        /// What the batch started with.
        got: u64,
    },
    /// No queue of that name on the node.
    NotFound,
    /// Record `index` of the batch is not a valid archived message of the queue's type.
    InvalidRecord {
        /// The record's index in the batch.
        index: u32,
    },
    /// A newer epoch of this producer id has written.
    StaleProducerEpoch {
        /// The newest epoch the node saw.
        newest: u64,
        /// The stream's epoch.
        got: u64,
    },
    /// The replicas of a synchronous queue did not acknowledge in time (the batch is written
    /// on the primary; retrying it does not write it twice).
    AckTimeout {
        /// The queue sequence waited for.
        queue_seq: u64,
    },
    /// The request broke the protocol.
    BadRequest,
    /// A newer stream of the same consumer name took over.
    Superseded,
    /// The node failed (its message says why).
    Internal,
    /// The client's certificate identity is not allowed `right` on `queue` by the node's
    /// `server.clients.rules` (or the client sent no certificate identity).
    PermissionDenied {
        /// The identity the node read from the client's certificate (its DNS subject
        /// alternative name; empty if it has none).
        identity: String,
        /// The queue.
        queue: String,
        /// The missing right: `read` or `write`.
        right: String,
    },
}

impl Refused {
    pub(crate) fn from_proto(reason: Option<proto::refusal::Reason>) -> Refused {
        use proto::refusal::Reason;
        match reason {
            Some(Reason::Redirect(r)) => Refused::Redirect {
                primary: r.primary,
                address: r.address,
                epoch: r.epoch,
            },
            Some(Reason::WrongType(w)) => Refused::WrongType {
                queue_type: w.queue_type,
                queue_fingerprint: w.queue_fingerprint,
                client_type: w.client_type,
                client_fingerprint: w.client_fingerprint,
            },
            Some(Reason::Gap(g)) => Refused::Gap {
                expected: g.expected,
                got: g.got,
            },
            Some(Reason::NotFound(_)) => Refused::NotFound,
            Some(Reason::InvalidRecord(r)) => Refused::InvalidRecord { index: r.index },
            Some(Reason::StaleEpoch(s)) => Refused::StaleProducerEpoch {
                newest: s.newest,
                got: s.got,
            },
            Some(Reason::AckTimeout(a)) => Refused::AckTimeout {
                queue_seq: a.queue_seq,
            },
            Some(Reason::BadRequest(_)) => Refused::BadRequest,
            Some(Reason::Superseded(_)) => Refused::Superseded,
            Some(Reason::PermissionDenied(d)) => Refused::PermissionDenied {
                identity: d.identity,
                queue: d.queue,
                right: d.right,
            },
            Some(Reason::Internal(_)) | None => Refused::Internal,
        }
    }

    /// Whether the same request may succeed when retried (on a new connection).
    #[must_use]
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            Refused::Redirect { .. } | Refused::AckTimeout { .. } | Refused::Internal
        )
    }
}

/// An error of [`RemoteProducer`](super::RemoteProducer) or
/// [`RemoteConsumer`](super::RemoteConsumer).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The node refused (the sentence names what and where).
    #[error("{node} refused: {message}")]
    Refused {
        /// The address of the node that refused.
        node: String,
        /// The node's sentence.
        message: String,
        /// The typed reason.
        reason: Refused,
    },
    /// The connection failed or ended (after the retries, for a producer).
    #[error("connection to {node}: {reason}")]
    Transport {
        /// The address.
        node: String,
        /// What failed.
        reason: String,
    },
    /// The node answered out of protocol.
    #[error("{node} broke the protocol: {reason}")]
    Protocol {
        /// The address.
        node: String,
        /// What was wrong.
        reason: String,
    },
    /// The TLS configuration cannot be used (a file that cannot be read, a bad PEM).
    #[error("TLS: {reason}")]
    Tls {
        /// What is wrong, naming the file.
        reason: String,
    },
    /// Serializing or reading a message failed.
    #[error(transparent)]
    Message(#[from] crate::QueueError),
}

impl ClientError {
    /// The typed refusal, if the node refused.
    #[must_use]
    pub fn refused(&self) -> Option<&Refused> {
        match self {
            ClientError::Refused { reason, .. } => Some(reason),
            _ => None,
        }
    }

    pub(crate) fn refusal(node: &str, r: proto::Refusal) -> ClientError {
        ClientError::Refused {
            node: node.to_owned(),
            message: r.message,
            reason: Refused::from_proto(r.reason),
        }
    }

    pub(crate) fn transport(node: &str, reason: impl std::fmt::Display) -> ClientError {
        ClientError::Transport {
            node: node.to_owned(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn protocol(node: &str, reason: impl Into<String>) -> ClientError {
        ClientError::Protocol {
            node: node.to_owned(),
            reason: reason.into(),
        }
    }
}
