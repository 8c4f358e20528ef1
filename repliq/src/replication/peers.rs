//! Who may speak replication to this node: the [`PeerSet`] a [`ReplicaService`] checks every
//! stream's `Hello` against.
//!
//! Static configuration fills it once; Kubernetes discovery (or anything else) can replace its
//! members while the service runs ([`PeerSet::replace`]), or decide with a function of its own
//! ([`PeerSet::from_fn`]).
//!
//! Under mutual TLS a peer's certificate must be issued to its *identity*: its node name unless
//! the set says otherwise ([`PeerSet::replace_with_identities`]; e.g. a DaemonSet pod's
//! per-pod certificate, named after the pod, while its node name is the Kubernetes node's).
//!
//! [`ReplicaService`]: super::ReplicaService

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

type Check = dyn Fn(&str) -> bool + Send + Sync;

#[derive(Clone)]
enum Inner {
    Any,
    /// Node name → the name its certificate must be issued to.
    Names(Arc<RwLock<BTreeMap<String, String>>>),
    Fn(Arc<Check>),
}

/// The node names from which a replica accepts replication streams. Cloning shares the set.
///
/// The name is the one a primary claims in its `Hello`; without mutual TLS it is a claim, so
/// this keeps well-meaning strangers (a misconfigured node, a test client, a stale deployment)
/// from demoting or overwriting queues, not an attacker who knows a peer's name.
#[derive(Clone)]
pub struct PeerSet(Inner);

impl std::fmt::Debug for PeerSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Inner::Any => f.write_str("PeerSet(any)"),
            Inner::Names(n) => f
                .debug_tuple("PeerSet")
                .field(&*n.read().unwrap_or_else(|p| p.into_inner()))
                .finish(),
            Inner::Fn(_) => f.write_str("PeerSet(fn)"),
        }
    }
}

impl PeerSet {
    /// Accepts every primary (tests, benchmarks, a replica on a trusted single-tenant network).
    #[must_use]
    pub fn any() -> Self {
        PeerSet(Inner::Any)
    }

    /// Accepts the primaries named `names`; [`PeerSet::replace`] changes them later.
    #[must_use]
    pub fn of<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        PeerSet(Inner::Names(Arc::new(RwLock::new(same_names(names)))))
    }

    /// Accepts the primaries named in `members`, `(node name, the name its certificate is
    /// issued to)`; [`PeerSet::replace_with_identities`] changes them later.
    #[must_use]
    pub fn with_identities<I>(members: I) -> Self
    where
        I: IntoIterator<Item = (String, String)>,
    {
        PeerSet(Inner::Names(Arc::new(RwLock::new(
            members.into_iter().collect(),
        ))))
    }

    /// Accepts the primaries for which `allows` returns `true` (asked on each new stream).
    #[must_use]
    pub fn from_fn(allows: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        PeerSet(Inner::Fn(Arc::new(allows)))
    }

    /// Replaces the members of a set made with [`PeerSet::of`] (seen by every clone). Streams
    /// already open are not cut. No effect on the other kinds.
    pub fn replace<I, S>(&self, names: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.replace_with_identities(same_names(names));
    }

    /// As [`replace`](PeerSet::replace), with each member's identity: `(node name, the name
    /// its certificate is issued to)`.
    pub fn replace_with_identities<I>(&self, members: I)
    where
        I: IntoIterator<Item = (String, String)>,
    {
        if let Inner::Names(set) = &self.0 {
            *set.write().unwrap_or_else(|p| p.into_inner()) = members.into_iter().collect();
        }
    }

    /// The name the certificate of the primary named `name` must be issued to: its identity in
    /// the set, else `name` itself.
    #[must_use]
    pub fn identity_of(&self, name: &str) -> String {
        match &self.0 {
            Inner::Names(set) => set
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(name)
                .cloned()
                .unwrap_or_else(|| name.to_owned()),
            Inner::Any | Inner::Fn(_) => name.to_owned(),
        }
    }

    /// `true` if a primary named `name` may open a replication stream.
    #[must_use]
    pub fn allows(&self, name: &str) -> bool {
        match &self.0 {
            Inner::Any => true,
            Inner::Names(set) => set
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .contains_key(name),
            Inner::Fn(f) => f(name),
        }
    }
}

/// Each name its own identity.
fn same_names<I, S>(names: I) -> BTreeMap<String, String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    names
        .into_iter()
        .map(|n| {
            let n = n.into();
            (n.clone(), n)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::PeerSet;

    #[test]
    fn members_change_for_every_clone() {
        let set = PeerSet::of(["a", "b"]);
        let seen_by_service = set.clone();
        assert!(seen_by_service.allows("a") && !seen_by_service.allows("evil"));
        set.replace(["c"]);
        assert!(!seen_by_service.allows("a") && seen_by_service.allows("c"));
        assert!(PeerSet::any().allows("anyone"));
        assert!(PeerSet::from_fn(|n| n.starts_with("node-")).allows("node-x"));
        assert!(!PeerSet::from_fn(|n| n.starts_with("node-")).allows("evil"));
    }

    #[test]
    fn a_member_is_its_own_identity_unless_given_one() {
        let set = PeerSet::of(["a"]);
        assert_eq!(set.identity_of("a"), "a");
        set.replace_with_identities([("node-1".to_owned(), "repliq-x7k2p".to_owned())]);
        assert!(set.allows("node-1") && !set.allows("repliq-x7k2p") && !set.allows("a"));
        assert_eq!(set.identity_of("node-1"), "repliq-x7k2p");
        assert_eq!(PeerSet::any().identity_of("b"), "b");
    }
}
