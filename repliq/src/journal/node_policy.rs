//! The node policy file: the replication policy a queue directory created under a node's
//! persistence root starts with, so that a producer that creates a queue there obeys the node's
//! policy from its first message (before the node's daemon has even seen the queue).
//!
//! The daemon (`repliqd`) writes `repliq-node.policy` into its persistence root at startup; the
//! journal reads it from the parent of a queue directory when it *creates* the queue's meta file
//! and writes the policy words into the meta file before publishing it (so no handle, in any
//! process, ever sees the new queue without the policy). Queues that already exist are not
//! affected: their policy is their replication owner's business. Format (`docs/FORMAT.md`):
//!
//! ```text
//! # comment
//! version = 1
//! node = node-a
//! role = primary
//! epoch = 1
//! required_acks = 2
//! ack_timeout_ms = 5000
//! ```
//!
//! Lines are `key = value`; blank lines and lines starting with `#` are ignored, and so are keys
//! this version does not know. A file that exists but cannot be parsed makes queue creation fail
//! (a synchronous node must not silently create asynchronous queues).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::policy::{Policy, Role};
use crate::{QueueError, Result};

/// The file name of the node policy in a persistence root.
pub const NODE_POLICY_FILE: &str = "repliq-node.policy";

/// The replication policy of a node, applied to queues created under its persistence root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePolicy {
    /// The node's name (informational).
    pub node: String,
    /// The role new queues start with (a node creates queues it writes: `Primary`).
    pub role: Role,
    /// The epoch new queues start in (at least 1).
    pub epoch: u64,
    /// Replicas that must acknowledge each message before `enqueue` returns (0: asynchronous).
    pub required_acks: u32,
    /// How long a synchronous `enqueue` waits for them.
    pub ack_timeout: Duration,
}

impl NodePolicy {
    /// The policy file's path under `root`.
    #[must_use]
    pub fn path(root: &Path) -> PathBuf {
        root.join(NODE_POLICY_FILE)
    }

    /// The file's text.
    #[must_use]
    pub fn to_text(&self) -> String {
        let role = match self.role {
            Role::Primary => "primary",
            Role::Replica => "replica",
        };
        format!(
            "# repliq node policy (docs/FORMAT.md): queues created under this directory start \
             with it\nversion = 1\nnode = {}\nrole = {role}\nepoch = {}\nrequired_acks = {}\n\
             ack_timeout_ms = {}\n",
            self.node,
            self.epoch.max(1),
            self.required_acks,
            self.ack_timeout.as_millis().max(1)
        )
    }

    /// Parses the file's text; `path` names it in errors.
    ///
    /// # Errors
    ///
    /// [`QueueError::InvalidConfig`] naming the line if a line or value is invalid, the version
    /// is not 1, or `required_acks` is missing.
    pub fn parse(path: &Path, text: &str) -> Result<NodePolicy> {
        let bad = |line: usize, why: String| {
            QueueError::InvalidConfig(format!("{}:{}: {why}", path.display(), line + 1))
        };
        let mut policy = NodePolicy {
            node: String::new(),
            role: Role::Primary,
            epoch: 1,
            required_acks: 0,
            ack_timeout: super::policy::DEFAULT_ACK_TIMEOUT,
        };
        let (mut version, mut acks) = (None, None);
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(bad(i, format!("expected `key = value`, found {line:?}")));
            };
            let (key, value) = (key.trim(), value.trim());
            let num = |v: &str| {
                v.parse::<u64>()
                    .map_err(|e| bad(i, format!("`{key}`: {v:?} is not a number ({e})")))
            };
            match key {
                "version" => version = Some(num(value)?),
                "node" => policy.node = value.to_owned(),
                "role" => {
                    policy.role = match value {
                        "primary" => Role::Primary,
                        "replica" => Role::Replica,
                        other => {
                            return Err(bad(
                                i,
                                format!("`role`: {other:?} is not `primary` or `replica`"),
                            ));
                        }
                    }
                }
                "epoch" => policy.epoch = num(value)?.max(1),
                "required_acks" => {
                    acks =
                        Some(u32::try_from(num(value)?).map_err(|_| {
                            bad(i, format!("`required_acks`: {value} is too large"))
                        })?);
                }
                "ack_timeout_ms" => {
                    let ms = num(value)?;
                    if ms == 0 {
                        return Err(bad(i, "`ack_timeout_ms` must be at least 1".into()));
                    }
                    policy.ack_timeout = Duration::from_millis(ms);
                }
                _ => {} // a later version's key: ignored
            }
        }
        match version {
            Some(1) => {}
            Some(v) => return Err(bad(0, format!("unsupported node policy version {v}"))),
            None => return Err(bad(0, "missing `version = 1`".into())),
        }
        policy.required_acks = acks.ok_or_else(|| bad(0, "missing `required_acks`".into()))?;
        Ok(policy)
    }

    /// Reads the node policy of the persistence root `root`, `Ok(None)` if it has none.
    ///
    /// # Errors
    ///
    /// [`QueueError::Io`] if it cannot be read; as [`NodePolicy::parse`].
    pub fn read(root: &Path) -> Result<Option<NodePolicy>> {
        let path = Self::path(root);
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&path, &text).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(QueueError::io(format!("reading {}", path.display()), e)),
        }
    }

    /// Writes the policy into `root`, replacing any previous one atomically (write, fsync,
    /// rename).
    ///
    /// # Errors
    ///
    /// [`QueueError::Io`].
    pub fn write(&self, root: &Path) -> Result<()> {
        use std::io::Write;
        let path = Self::path(root);
        let tmp = super::temp_path(root, &format!("tmp-{NODE_POLICY_FILE}"));
        let io = |e| QueueError::io(format!("writing {}", path.display()), e);
        {
            let _ = std::fs::remove_file(&tmp);
            let mut f =
                super::perms::create_new(root, std::fs::OpenOptions::new().write(true), &tmp)
                    .map_err(io)?;
            f.write_all(self.to_text().as_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, &path).map_err(io)
    }

    /// The policy words a new queue starts with.
    pub(crate) fn initial(&self) -> Policy {
        Policy {
            role: self.role,
            epoch: self.epoch.max(1),
            required_acks: if self.role == Role::Primary {
                self.required_acks
            } else {
                0
            },
            ack_timeout: self.ack_timeout,
        }
    }
}

/// The policy a queue directory starts with when its meta file is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InitialPolicy {
    /// The node policy of the directory's parent, if it has one; otherwise none (primary of
    /// epoch 1, asynchronous).
    Inherit,
    /// Exactly this one (a replica created by replication).
    #[cfg_attr(not(feature = "replication"), allow(dead_code))]
    Explicit(Policy),
}

impl InitialPolicy {
    /// The policy words to write into a new meta file of the queue in `dir`.
    pub(crate) fn resolve(self, dir: &Path) -> Result<Option<Policy>> {
        match self {
            InitialPolicy::Explicit(p) => Ok(Some(p)),
            InitialPolicy::Inherit => match dir.parent() {
                Some(root) if !root.as_os_str().is_empty() => {
                    Ok(NodePolicy::read(root)?.map(|p| p.initial()))
                }
                _ => Ok(NodePolicy::read(Path::new("."))?.map(|p| p.initial())),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_garbage() {
        let p = NodePolicy {
            node: "node-a".into(),
            role: Role::Primary,
            epoch: 1,
            required_acks: 2,
            ack_timeout: Duration::from_millis(750),
        };
        let path = Path::new("/x/repliq-node.policy");
        assert_eq!(NodePolicy::parse(path, &p.to_text()).unwrap(), p);
        let with_unknown = format!("{}future_key = 3\n", p.to_text());
        assert_eq!(NodePolicy::parse(path, &with_unknown).unwrap(), p);
        for bad in [
            "version = 2\nrequired_acks = 1\n",
            "required_acks = 1\n",
            "version = 1\n",
            "version = 1\nrequired_acks = two\n",
            "version = 1\nrequired_acks = 1\nrole = leader\n",
            "version = 1\nrequired_acks = 1\nack_timeout_ms = 0\n",
            "version = 1\nrequired_acks\n",
        ] {
            let e = NodePolicy::parse(path, bad).unwrap_err();
            assert!(
                matches!(&e, QueueError::InvalidConfig(m) if m.starts_with("/x/repliq-node.policy:")),
                "{bad:?}: {e}"
            );
        }
    }
}
