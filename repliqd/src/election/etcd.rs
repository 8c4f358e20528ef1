//! The etcd v3 backend, for clusters without Kubernetes.
//!
//! Keys under `/{prefix}/{queue}/`:
//!
//! * `leader`: `{"holder": node, "epoch": n}`, never deleted (the epoch must not go back);
//!   written with a transaction that compares the key's `mod_revision` with the one last read
//!   (0: absent). The token of the machine is that revision; the holder rewrites the key at
//!   every renewal, so a live lease keeps changing.
//! * `candidates/{node}`: the node's position, `"{next_seq} {last_epoch}"` (a value without the
//!   epoch, from an older repliqd, reads as epoch 0), attached to the node's etcd lease (granted
//!   once with a TTL of the lease duration, kept alive at every advertisement), so a dead node's
//!   advertisement disappears on its own.

use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp};
use tokio::sync::Mutex;

use super::backend::{LeaseBackend, LeaseRecord};
use super::machine::{CandidateView, LeaseView, Observation, Position, WriteOutcome};

/// An etcd connection (made lazily, remade after errors).
#[derive(Debug)]
pub struct EtcdBackend {
    endpoints: Vec<String>,
    prefix: String,
    ttl: Duration,
    timeout: Duration,
    conn: Mutex<Option<Conn>>,
}

struct Conn {
    client: Client,
    lease: Option<(
        i64,
        etcd_client::LeaseKeeper,
        etcd_client::LeaseKeepAliveStream,
    )>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("lease", &self.lease.as_ref().map(|l| l.0))
            .finish_non_exhaustive()
    }
}

impl EtcdBackend {
    /// A backend on `endpoints`; advertisements live `ttl`; each request times out after
    /// `timeout`.
    #[must_use]
    pub fn new(endpoints: Vec<String>, prefix: &str, ttl: Duration, timeout: Duration) -> Self {
        EtcdBackend {
            endpoints,
            prefix: prefix.trim_matches('/').to_owned(),
            ttl,
            timeout,
            conn: Mutex::new(None),
        }
    }

    fn key(&self, queue: &str, rest: &str) -> String {
        format!("/{}/{queue}/{rest}", self.prefix)
    }

    async fn client(&self) -> Result<Client, String> {
        let mut conn = self.conn.lock().await;
        if let Some(c) = &*conn {
            return Ok(c.client.clone());
        }
        let options = ConnectOptions::new()
            .with_connect_timeout(self.timeout)
            .with_timeout(self.timeout);
        let client = Client::connect(&self.endpoints, Some(options))
            .await
            .map_err(|e| format!("{} is unreachable: {e}", self.describe()))?;
        *conn = Some(Conn {
            client: client.clone(),
            lease: None,
        });
        Ok(client)
    }

    async fn forget(&self) {
        *self.conn.lock().await = None;
    }

    /// This node's etcd lease for its advertisements, granted on first use and kept alive.
    async fn node_lease(&self) -> Result<i64, String> {
        let mut client = self.client().await?;
        let mut conn = self.conn.lock().await;
        let Some(c) = conn.as_mut() else {
            return Err("etcd connection lost".into());
        };
        if let Some((id, keeper, stream)) = &mut c.lease {
            let alive = async {
                keeper.keep_alive().await?;
                stream.message().await
            };
            match tokio::time::timeout(self.timeout, alive).await {
                Ok(Ok(Some(r))) if r.ttl() > 0 => return Ok(*id),
                _ => c.lease = None,
            }
        }
        let ttl = i64::try_from(self.ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        let granted = client
            .lease_grant(ttl, None)
            .await
            .map_err(|e| format!("granting an etcd lease: {e}"))?;
        let (keeper, stream) = client
            .lease_keep_alive(granted.id())
            .await
            .map_err(|e| format!("keeping an etcd lease alive: {e}"))?;
        c.lease = Some((granted.id(), keeper, stream));
        Ok(granted.id())
    }
}

#[async_trait]
impl LeaseBackend for EtcdBackend {
    fn describe(&self) -> String {
        format!("etcd at {:?}", self.endpoints)
    }

    async fn observe(&self, queue: &str) -> Result<Observation, String> {
        let mut client = self.client().await?;
        let leader = self.key(queue, "leader");
        let got = match client.get(leader.as_str(), None).await {
            Ok(r) => r,
            Err(e) => {
                self.forget().await;
                return Err(format!("{}: reading {leader}: {e}", self.describe()));
            }
        };
        let lease = match got.kvs().first() {
            None => LeaseView::default(),
            Some(kv) => {
                let record: LeaseRecord = serde_json::from_slice(kv.value())
                    .map_err(|e| format!("{leader} holds no lease record: {e}"))?;
                LeaseView {
                    holder: Some(record.holder).filter(|h| !h.is_empty()),
                    epoch: record.epoch,
                    token: kv.mod_revision().to_string(),
                }
            }
        };
        let prefix = self.key(queue, "candidates/");
        let got = client
            .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|e| format!("{}: reading {prefix}: {e}", self.describe()))?;
        let candidates = got
            .kvs()
            .iter()
            .filter_map(|kv| {
                let node = kv.key_str().ok()?.strip_prefix(&prefix)?.to_owned();
                let position = parse_position(kv.value_str().ok()?)?;
                Some(CandidateView {
                    node,
                    position,
                    token: kv.mod_revision().to_string(),
                })
            })
            .collect();
        Ok(Observation { lease, candidates })
    }

    async fn write(&self, queue: &str, node: &str, epoch: u64, expected: &str) -> WriteOutcome {
        let Ok(mut client) = self.client().await else {
            return WriteOutcome::Failed;
        };
        let Ok(revision) = (if expected.is_empty() {
            Ok(0)
        } else {
            expected.parse::<i64>()
        }) else {
            return WriteOutcome::Conflict;
        };
        let leader = self.key(queue, "leader");
        let Ok(value) = serde_json::to_vec(&LeaseRecord {
            holder: node.to_owned(),
            epoch,
        }) else {
            return WriteOutcome::Failed;
        };
        let txn = Txn::new()
            .when([Compare::mod_revision(
                leader.as_str(),
                CompareOp::Equal,
                revision,
            )])
            .and_then([TxnOp::put(leader.as_str(), value, None)]);
        match client.txn(txn).await {
            Ok(r) if r.succeeded() => match r.header() {
                Some(h) => WriteOutcome::Written(h.revision().to_string()),
                None => WriteOutcome::Failed,
            },
            Ok(_) => WriteOutcome::Conflict,
            Err(e) => {
                tracing::debug!(error = %e, "etcd transaction failed");
                self.forget().await;
                WriteOutcome::Failed
            }
        }
    }

    async fn advertise(&self, queue: &str, node: &str, position: Position) -> Result<(), String> {
        let lease = self.node_lease().await?;
        let mut client = self.client().await?;
        let key = self.key(queue, &format!("candidates/{node}"));
        client
            .put(
                key.as_str(),
                format!("{} {}", position.next_seq, position.last_epoch),
                Some(PutOptions::new().with_lease(lease)),
            )
            .await
            .map(|_| ())
            .map_err(|e| format!("{}: writing {key}: {e}", self.describe()))
    }
}

/// A candidate's value: `"{next_seq} {last_epoch}"`, or `"{next_seq}"` (epoch 0).
fn parse_position(value: &str) -> Option<Position> {
    let mut parts = value.split_whitespace();
    let next_seq = parts.next()?.parse().ok()?;
    let last_epoch = match parts.next() {
        Some(e) => e.parse().ok()?,
        None => 0,
    };
    parts.next().is_none().then_some(Position {
        last_epoch,
        next_seq,
    })
}

#[cfg(test)]
mod test {
    use super::{Position, parse_position};

    #[test]
    fn a_candidates_value_is_its_position() {
        let p = |last_epoch, next_seq| {
            Some(Position {
                last_epoch,
                next_seq,
            })
        };
        assert_eq!(parse_position("42 3"), p(3, 42));
        assert_eq!(parse_position("42"), p(0, 42), "an older repliqd's value");
        assert_eq!(parse_position("42 x"), None);
        assert_eq!(parse_position("42 3 1"), None);
        assert_eq!(parse_position(""), None);
    }
}
