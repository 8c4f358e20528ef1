//! `repliqd`'s configuration: the seed's `config.yaml` shape plus a static peer list.
//!
//! ```yaml
//! replication:
//!   mode: synchronous          # or asynchronous (default)
//!   required_acks: 1           # synchronous mode: replicas that must acknowledge (default: all)
//!   ack_timeout_ms: 5000       # synchronous mode: how long `enqueue` waits for them (default 5000)
//!   ack_level: durable         # synchronous mode: a replica acknowledges once the record is
//!                              # synced (`durable`, default) or in its journal (`replicated`)
//!   max_replica_lag_segments: 1024  # retention keeps a replica's segments up to this lag, then
//!                              # declares it lost (it resyncs in full when back; default 1024)
//!   discovery:
//!     method: static           # or kubernetes (pods matching label_selector, Ready only)
//!     label_selector: app=repliq
//!     peers:                   # static only; never this node itself
//!       - name: node-b
//!         address: 127.0.0.1:31338
//!         # identity: repliq-q9m4z   # mutual TLS: the name its certificate carries (default: name)
//!     # members:               # static only, instead of `peers`: every node, this one
//!     #   - name: node-a       # included (one list shared by all nodes, e.g. a StatefulSet's
//!     #     address: ...       # ConfigMap); the node drops its own entry by NODE_NAME
//!     # kubernetes only:
//!     # namespace: repliq      # default: POD_NAMESPACE, else the service account's namespace
//!     # peer_name: node        # a pod's peer name: `node` (spec.nodeName) or `pod` (its name)
//!     # tls_identity: peer     # mutual TLS: a peer's certificate names its peer name (`peer`)
//!     #                        # or its pod (`pod`: per-pod certificates in a DaemonSet)
//!     # port: 31337            # the peers' gRPC port
//! queue:
//!   capacity: 1048576
//!   persistence:
//!     path: /var/lib/repliq
//! server:                      # optional
//!   grpc_listen: 0.0.0.0:31337
//!   http_listen: 0.0.0.0:9100
//!   shutdown_grace_ms: 10000
//!   failure_linger_ms: 1000    # a task stopped: 503 this long, then exit 1
//!   clients: false             # serve remote producers/consumers on the gRPC port (docs/CLIENTS.md);
//!                              # or a mapping, with per-queue rules (needs `tls`):
//!   # clients:
//!   #   enabled: true            # default true when the mapping is given
//!   #   rules:                   # a client certificate's DNS SAN, per queue; deny by default
//!   #     - identity: "billing-*" # `*` matches any run of characters
//!   #       queues: ["orders", "orders.*"]
//!   #       allow: [read, write]
//!   tls:                       # optional: mutual TLS between nodes (PEM files, re-read on change)
//!     ca: /etc/repliq/tls/ca.crt
//!     cert: /etc/repliq/tls/tls.crt   # DNS SAN = the node name
//!     key: /etc/repliq/tls/tls.key
//!   http_tls:                  # optional: HTTPS on the HTTP port (PEM files, re-read on change)
//!     cert: /etc/repliq/https/tls.crt
//!     key: /etc/repliq/https/tls.key
//!   http_auth:                 # optional: a bearer token for every HTTP path but the probes
//!     token_file: /etc/repliq-http-auth/token   # re-read on change
//!     metrics_open: false      # true: /metrics needs no token either
//! election:                    # optional: automatic failover by a lease (see `election`)
//!   backend: etcd              # or kubernetes (a coordination.k8s.io/v1 Lease per queue)
//!   endpoints: [http://127.0.0.1:2379]
//!   prefix: repliq
//!   lease_duration_ms: 10000
//!   renew_deadline_ms: 6000
//!   retry_period_ms: 1000
//! connectors:                  # optional (feature `connectors`): see docs/CONNECTORS.md
//!   - name: orders-to-redis
//!     queue: orders            # relative to queue.persistence.path
//!     dead_letter: orders.dead
//!     redis_sink: { url: "redis://127.0.0.1:6379/", stream: orders }
//! ```
//!
//! Every problem is reported with the key it concerns, as `key.path: reason`.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use repliq::{QueueError, ReplicationMode};

/// The default gRPC port of `repliqd`.
pub const DEFAULT_GRPC_PORT: u16 = 31337;
/// The default port of the HTTP endpoints (`/metrics`, `/healthz`, `/readyz`).
pub const DEFAULT_HTTP_PORT: u16 = 9100;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// How queues are replicated.
    pub replication: Replication,
    /// Queue defaults and where queues live.
    pub queue: QueueSection,
    /// Listening addresses and shutdown behaviour.
    #[serde(default)]
    pub server: Server,
    /// Automatic failover (absent: failover is manual, `repliq promote`).
    #[serde(default)]
    pub election: Option<crate::election::ElectionConfig>,
    /// Sinks and sources bridging queues to other systems (feature `connectors`).
    #[serde(default)]
    pub connectors: Vec<ConnectorSpec>,
    /// Traces over OTLP (absent: only the standard `OTEL_*` variables configure them).
    #[serde(default)]
    pub tracing: Option<crate::telemetry::TracingConfig>,
    /// The node's own events (replica lost and back, lag above a bound, role changes) written
    /// into a local queue (absent: none are written; docs/OBSERVABILITY.md, "Node events").
    #[serde(default)]
    pub events: Option<crate::node_events::EventsConfig>,
}

/// One entry of `connectors:`.
#[cfg(feature = "connectors")]
pub type ConnectorSpec = repliq_connect::ConnectorConfig;
/// One entry of `connectors:` (refused: this build has no connectors).
#[cfg(not(feature = "connectors"))]
pub type ConnectorSpec = serde_json::Value;

/// `replication:`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Replication {
    /// `synchronous` or `asynchronous`.
    #[serde(default, with = "mode")]
    pub mode: ReplicationMode,
    /// In synchronous mode, how many replicas must acknowledge a message (default: all peers).
    #[serde(default)]
    pub required_acks: Option<usize>,
    /// In synchronous mode, how long an `enqueue` waits for the acknowledgements before it
    /// fails with `ReplicationError::AckTimeout` (milliseconds, default 5000).
    #[serde(default)]
    pub ack_timeout_ms: Option<u64>,
    /// In synchronous mode, what a replica's acknowledgement means: `durable` (synced, the
    /// default) or `replicated` (in its journal; survives a crash of the replica process, not a
    /// power loss). See [`repliq::replication::AckLevel`].
    #[serde(default, with = "ack_level")]
    pub ack_level: repliq::replication::AckLevel,
    /// Retention on a primary keeps the segments a replica lacks until it is this many segments
    /// behind; then the replica is declared lost (metric, warning) and retention proceeds
    /// (default [`repliq::replication::DEFAULT_MAX_REPLICA_LAG_SEGMENTS`]).
    #[serde(default)]
    pub max_replica_lag_segments: Option<u64>,
    /// How peers are found.
    pub discovery: Discovery,
}

/// `replication.discovery:`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Discovery {
    /// `static` (peers listed here) or `kubernetes` (pods found by label selector).
    pub method: DiscoveryMethod,
    /// Kubernetes label selector of the repliq pods.
    #[serde(default)]
    pub label_selector: Option<String>,
    /// The other nodes, for `static` discovery. Naming this node itself is an error.
    #[serde(default)]
    pub peers: Vec<Peer>,
    /// Every node of the cluster, this one included, for `static` discovery: one list that all
    /// nodes share (a StatefulSet's ConfigMap). The node drops its own entry by name; a list
    /// that does not name it is an error. Exclusive with `peers`.
    #[serde(default)]
    pub members: Option<Vec<Peer>>,
    /// `kubernetes`: the namespace to watch (default: `POD_NAMESPACE`, else the service
    /// account's namespace).
    #[serde(default)]
    pub namespace: Option<String>,
    /// `kubernetes`: how a pod's peer name is chosen.
    #[serde(default)]
    pub peer_name: PeerName,
    /// `kubernetes`: the peers' gRPC port (default 31337).
    #[serde(default)]
    pub port: Option<u16>,
    /// `kubernetes`: under mutual TLS, the name a peer pod's certificate is issued to.
    #[serde(default)]
    pub tls_identity: TlsIdentity,
}

/// Which name a peer pod's certificate carries (Kubernetes discovery under mutual TLS).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TlsIdentity {
    /// Its peer name (`peer_name`): one Secret naming every node, or per-pod certificates
    /// when `peer_name: pod`.
    #[default]
    Peer,
    /// The pod's name (`metadata.name`), whatever the peer name: per-pod certificates (e.g.
    /// cert-manager's csi-driver) in a DaemonSet, whose peer names are the Kubernetes nodes'.
    Pod,
}

/// How Kubernetes discovery names a peer pod.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PeerName {
    /// The Kubernetes node it runs on (`spec.nodeName`), as `NODE_NAME` from the downward API.
    #[default]
    Node,
    /// The pod's name (`metadata.name`).
    Pod,
}

/// How peers are found.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DiscoveryMethod {
    /// Peers are listed in the configuration.
    Static,
    /// Peers are found through the Kubernetes API by label selector.
    Kubernetes,
}

/// One other node.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    /// Its `NODE_NAME`.
    pub name: String,
    /// Its gRPC address, `host:port`.
    pub address: String,
    /// Under mutual TLS (`server.tls`), the name its certificate is issued to, when that is not
    /// `name` (a per-pod certificate named after a DaemonSet pod); absent: `name`.
    #[serde(default)]
    pub identity: Option<String>,
}

impl Peer {
    /// The name this peer's certificate must be issued to.
    #[must_use]
    pub fn identity(&self) -> &str {
        self.identity.as_deref().unwrap_or(&self.name)
    }
}

/// `queue:`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct QueueSection {
    /// Backlog bound of queues created by the daemon (messages).
    pub capacity: u64,
    /// Where queues live.
    pub persistence: Persistence,
}

/// `queue.persistence:`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Persistence {
    /// The directory holding one sub-directory per queue.
    pub path: PathBuf,
}

/// `server:`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// gRPC listening address.
    #[serde(default = "default_grpc")]
    pub grpc_listen: SocketAddr,
    /// HTTP listening address for `/metrics`, `/healthz`, `/readyz`.
    #[serde(default = "default_http")]
    pub http_listen: SocketAddr,
    /// How long a SIGTERM waits for replicas to catch up before exiting.
    #[serde(default = "default_grace")]
    pub shutdown_grace_ms: u64,
    /// Mutual TLS on the gRPC port and to the replicas (see `repliqd::tls`); plain text (with
    /// a warning) when absent.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// A bearer token for the HTTP port (see `repliqd::http_auth`); open when absent.
    #[serde(default)]
    pub http_auth: Option<HttpAuthConfig>,
    /// HTTPS on the HTTP port; plain HTTP when absent.
    #[serde(default)]
    pub http_tls: Option<HttpTlsConfig>,
    /// After a task of the daemon stopped unexpectedly: how long `/healthz` and `/readyz` answer
    /// 503 naming it before the daemon drains and exits with status 1.
    #[serde(default = "default_failure_linger")]
    pub failure_linger_ms: u64,
    /// Serve remote producers and consumers (`repliq.client.v1`, docs/CLIENTS.md) on the gRPC
    /// port, and who may read and write which queue. Off by default.
    #[serde(default)]
    pub clients: Clients,
}

/// `server.clients`: `true` / `false`, or a mapping with `enabled` and `rules`.
///
/// Without rules, every client that reaches the port (with `server.tls`: every client with a
/// certificate from the CA) may read and write every queue. With rules (which need
/// `server.tls`), a client may do only what a rule matching its certificate's identity allows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Clients {
    /// Whether the client service is served.
    pub enabled: bool,
    /// The authorization rules; none: no authorization.
    pub rules: Vec<ClientRule>,
}

/// One rule of `server.clients.rules`: identities matching `identity` may do `allow` on the
/// queues matching one of `queues`. Patterns match whole names; `*` matches any run of
/// characters (`.` and `-` included), nothing else is special.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientRule {
    /// A client certificate's identity (its first DNS subject alternative name), or a pattern.
    pub identity: String,
    /// Queue names or patterns.
    pub queues: Vec<String>,
    /// The rights granted.
    pub allow: Vec<ClientRight>,
}

/// A right of a client on a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientRight {
    /// Consume: open a durable consumer, receive records, acknowledge them.
    Read,
    /// Produce: write records.
    Write,
}

impl ClientRight {
    /// `read` or `write`, as in the configuration.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ClientRight::Read => "read",
            ClientRight::Write => "write",
        }
    }
}

/// The mapping form of `server.clients`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientsSection {
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    rules: Vec<ClientRule>,
}

fn yes() -> bool {
    true
}

impl<'de> Deserialize<'de> for Clients {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Clients;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("`true`, `false`, or a mapping with `enabled` and `rules`")
            }
            fn visit_bool<E: serde::de::Error>(self, enabled: bool) -> Result<Clients, E> {
                Ok(Clients {
                    enabled,
                    rules: Vec::new(),
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Clients, A::Error> {
                let section =
                    ClientsSection::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(Clients {
                    enabled: section.enabled,
                    rules: section.rules,
                })
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// `server.tls`: PEM files of this node's certificate (its DNS subject alternative name is the
/// node name), its key, and the CA every peer's certificate chains to. Re-read when they change.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The CA certificate(s).
    pub ca: std::path::PathBuf,
    /// This node's certificate chain.
    pub cert: std::path::PathBuf,
    /// This node's private key.
    pub key: std::path::PathBuf,
}

/// `server.http_tls`: HTTPS on the HTTP port, with this certificate (chain) and key, re-read when
/// they change. No client certificate is asked for: `server.http_auth` authenticates clients.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTlsConfig {
    /// The server's certificate chain (PEM).
    pub cert: std::path::PathBuf,
    /// Its private key (PEM).
    pub key: std::path::PathBuf,
}

/// `server.http_auth`: every HTTP path but `/healthz` and `/readyz` (and `/metrics` if
/// `metrics_open`) needs `Authorization: Bearer <the file's content>`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpAuthConfig {
    /// The token's file (surrounding whitespace ignored); re-read when it changes.
    pub token_file: std::path::PathBuf,
    /// Leave `/metrics` open (it names queues and cursors, not messages).
    #[serde(default)]
    pub metrics_open: bool,
}

impl TlsConfig {
    /// The same files, as the replication library takes them.
    #[must_use]
    pub fn files(&self) -> repliq::replication::TlsFiles {
        repliq::replication::TlsFiles::new(self.ca.clone(), self.cert.clone(), self.key.clone())
    }
}

impl Default for Server {
    fn default() -> Self {
        Server {
            grpc_listen: default_grpc(),
            http_listen: default_http(),
            shutdown_grace_ms: default_grace(),
            tls: None,
            http_auth: None,
            http_tls: None,
            failure_linger_ms: default_failure_linger(),
            clients: Clients::default(),
        }
    }
}

fn default_grpc() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], DEFAULT_GRPC_PORT))
}
fn default_http() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], DEFAULT_HTTP_PORT))
}
fn default_grace() -> u64 {
    10_000
}
fn default_failure_linger() -> u64 {
    1_000
}

mod mode {
    use serde::{Deserialize, Deserializer};

    use repliq::ReplicationMode;

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<ReplicationMode, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "synchronous" | "sync" => Ok(ReplicationMode::Synchronous),
            "asynchronous" | "async" => Ok(ReplicationMode::Asynchronous),
            other => Err(serde::de::Error::custom(format_args!(
                "unknown replication mode `{other}`, expected `synchronous` or `asynchronous`"
            ))),
        }
    }
}

mod ack_level {
    use serde::{Deserialize, Deserializer};

    use repliq::replication::AckLevel;

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<AckLevel, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "durable" => Ok(AckLevel::Durable),
            "replicated" => Ok(AckLevel::Replicated),
            other => Err(serde::de::Error::custom(format_args!(
                "unknown acknowledgement level `{other}`, expected `durable` or `replicated`"
            ))),
        }
    }
}

fn invalid(key: &str, reason: impl std::fmt::Display) -> QueueError {
    QueueError::InvalidConfig(format!("{key}: {reason}"))
}

impl Config {
    /// Reads and validates a configuration file.
    ///
    /// # Errors
    ///
    /// [`QueueError::Io`] if the file cannot be read, [`QueueError::InvalidConfig`] naming the
    /// key and the reason if it is not valid.
    pub fn from_file(path: &Path) -> Result<Config, QueueError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| QueueError::io(format!("reading config {}", path.display()), e))?;
        Self::from_yaml(&text).map_err(|e| match e {
            QueueError::InvalidConfig(m) => {
                QueueError::InvalidConfig(format!("{}: {m}", path.display()))
            }
            other => other,
        })
    }

    /// Parses and validates YAML text.
    ///
    /// # Errors
    ///
    /// [`QueueError::InvalidConfig`] naming the key and the reason.
    pub fn from_yaml(text: &str) -> Result<Config, QueueError> {
        let de = serde_norway::Deserializer::from_str(text);
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            // The YAML error repeats the enclosing mapping's path ("replication: ..."): keep
            // only the full path in front.
            let reason = match inner.split_once(": ") {
                Some((head, rest)) if !head.contains(' ') && path.contains(head) => rest,
                _ => inner.as_str(),
            };
            if path == "." {
                QueueError::InvalidConfig(reason.to_owned())
            } else {
                invalid(&path, reason)
            }
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), QueueError> {
        let d = &self.replication.discovery;
        if d.method == DiscoveryMethod::Kubernetes {
            if d.label_selector.is_none() {
                return Err(invalid(
                    "replication.discovery.label_selector",
                    "required by `method: kubernetes`",
                ));
            }
            if !d.peers.is_empty() {
                return Err(invalid(
                    "replication.discovery.peers",
                    "only for `method: static` (kubernetes discovery finds the peers)",
                ));
            }
            if d.members.is_some() {
                return Err(invalid(
                    "replication.discovery.members",
                    "only for `method: static` (kubernetes discovery finds the peers)",
                ));
            }
        }
        if d.members.is_some() && !d.peers.is_empty() {
            return Err(invalid(
                "replication.discovery.members",
                "give either `peers` (the other nodes) or `members` (every node, this one \
                 included), not both",
            ));
        }
        if let Some(e) = &self.election {
            e.validate()?;
        }
        if let Some(sel) = &d.label_selector
            && sel.trim().is_empty()
        {
            return Err(invalid(
                "replication.discovery.label_selector",
                "must not be empty when given",
            ));
        }
        let (key, list) = match &d.members {
            Some(members) => ("members", members.as_slice()),
            None => ("peers", d.peers.as_slice()),
        };
        let mut names = BTreeSet::new();
        for (i, p) in list.iter().enumerate() {
            let at = format!("replication.discovery.{key}[{i}]");
            if p.name.trim().is_empty() {
                return Err(invalid(&format!("{at}.name"), "must not be empty"));
            }
            if !names.insert(p.name.as_str()) {
                return Err(invalid(
                    &format!("{at}.name"),
                    format_args!("node `{}` is listed twice", p.name),
                ));
            }
            if !valid_host_port(&p.address) {
                return Err(invalid(
                    &format!("{at}.address"),
                    format_args!("`{}` is not a `host:port` address", p.address),
                ));
            }
        }
        if let Some(k) = self.replication.required_acks {
            if k == 0 {
                return Err(invalid(
                    "replication.required_acks",
                    "must be at least 1 (use `mode: asynchronous` for no acknowledgements)",
                ));
            }
            // `members` names this node too: it is not one of its own replicas.
            let others = match &d.members {
                Some(m) => m.len().saturating_sub(1),
                None => d.peers.len(),
            };
            if d.method == DiscoveryMethod::Static && k > others {
                return Err(invalid(
                    "replication.required_acks",
                    format_args!(
                        "{k} acknowledgements required but only {others} other nodes are \
                         configured"
                    ),
                ));
            }
        }
        if self.replication.ack_timeout_ms == Some(0) {
            return Err(invalid("replication.ack_timeout_ms", "must be at least 1"));
        }
        if self.replication.max_replica_lag_segments == Some(0) {
            return Err(invalid(
                "replication.max_replica_lag_segments",
                "must be at least 1",
            ));
        }
        if self.queue.capacity == 0 {
            return Err(invalid("queue.capacity", "must be at least 1"));
        }
        if self.queue.persistence.path.as_os_str().is_empty() {
            return Err(invalid("queue.persistence.path", "must not be empty"));
        }
        if let Some(events) = &self.events {
            events.validate(&self.queue.persistence.path)?;
        }
        self.validate_connectors()?;
        self.validate_clients()?;
        if self.server.grpc_listen == self.server.http_listen && self.server.grpc_listen.port() != 0
        {
            return Err(invalid(
                "server.http_listen",
                "must differ from server.grpc_listen",
            ));
        }
        Ok(())
    }

    fn validate_clients(&self) -> Result<(), QueueError> {
        let clients = &self.server.clients;
        if clients.rules.is_empty() {
            return Ok(());
        }
        if self.server.tls.is_none() {
            return Err(invalid(
                "server.clients.rules",
                "need `server.tls`: without TLS a client has no certificate, so no identity a \
                 rule could match (docs/CLIENTS.md, \"Authorization\")",
            ));
        }
        for (i, rule) in clients.rules.iter().enumerate() {
            let at = format!("server.clients.rules[{i}]");
            if rule.identity.trim().is_empty() {
                return Err(invalid(&format!("{at}.identity"), "must not be empty"));
            }
            if rule.queues.is_empty() {
                return Err(invalid(
                    &format!("{at}.queues"),
                    "must name at least one queue",
                ));
            }
            if let Some(j) = rule.queues.iter().position(|q| q.trim().is_empty()) {
                return Err(invalid(&format!("{at}.queues[{j}]"), "must not be empty"));
            }
            if rule.allow.is_empty() {
                return Err(invalid(
                    &format!("{at}.allow"),
                    "must grant `read`, `write` or both",
                ));
            }
        }
        Ok(())
    }

    #[cfg(not(feature = "connectors"))]
    fn validate_connectors(&self) -> Result<(), QueueError> {
        if self.connectors.is_empty() {
            Ok(())
        } else {
            Err(invalid(
                "connectors",
                "this repliqd was built without the `connectors` feature",
            ))
        }
    }

    #[cfg(feature = "connectors")]
    fn validate_connectors(&self) -> Result<(), QueueError> {
        let mut names = BTreeSet::new();
        for (i, c) in self.connectors.iter().enumerate() {
            if let Err(repliq_connect::ConnectError::Config { key, reason, .. }) = c.check() {
                return Err(invalid(&format!("connectors[{i}].{key}"), reason));
            }
            if !names.insert(c.name.as_str()) {
                return Err(invalid(
                    &format!("connectors[{i}].name"),
                    format!("{:?} is used by another connector", c.name),
                ));
            }
        }
        Ok(())
    }

    /// The other nodes static discovery knows: `peers`, or `members` without `node` itself.
    #[must_use]
    pub fn static_peers(&self, node: &str) -> Vec<Peer> {
        let d = &self.replication.discovery;
        match &d.members {
            Some(members) => members.iter().filter(|p| p.name != node).cloned().collect(),
            None => d.peers.iter().filter(|p| p.name != node).cloned().collect(),
        }
    }

    /// The number of replica acknowledgements a synchronous `enqueue` waits for.
    #[must_use]
    pub fn required_acks(&self, node: &str) -> usize {
        self.required_acks_of(self.static_peers(node).len())
    }

    /// The same, when `peers` other nodes are known (discovery snapshots).
    #[must_use]
    pub fn required_acks_of(&self, peers: usize) -> usize {
        match self.replication.mode {
            ReplicationMode::Asynchronous => 0,
            ReplicationMode::Synchronous => self.replication.required_acks.unwrap_or(peers),
        }
    }
}

impl Config {
    /// How long a synchronous `enqueue` waits for its acknowledgements.
    #[must_use]
    pub fn ack_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.replication.ack_timeout_ms.unwrap_or(5_000))
    }

    /// After how many segments of lag a replica is declared lost.
    #[must_use]
    pub fn max_replica_lag_segments(&self) -> u64 {
        self.replication
            .max_replica_lag_segments
            .unwrap_or(repliq::replication::DEFAULT_MAX_REPLICA_LAG_SEGMENTS)
    }
}

fn valid_host_port(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0),
        None => false,
    }
}

#[cfg(test)]
mod test {
    use super::*;

    const SEED: &str = "
replication:
  mode: synchronous
  discovery:
    method: static
    label_selector: app=repliq
    peers:
      - name: b
        address: 127.0.0.1:4001
      - name: c
        address: localhost:4002
queue:
  capacity: 1024
  persistence:
    path: /tmp/repliq
";

    fn err(yaml: &str) -> String {
        match Config::from_yaml(yaml) {
            Err(QueueError::InvalidConfig(m)) => m,
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }

    #[test]
    fn the_seed_shape_parses_with_defaults() {
        let c = Config::from_yaml(SEED).unwrap();
        assert_eq!(c.replication.mode, ReplicationMode::Synchronous);
        assert_eq!(c.required_acks("node-x"), 2);
        assert_eq!(c.required_acks("b"), 1, "a node is not its own replica");
        assert_eq!(c.queue.capacity, 1024);
        assert_eq!(c.server.grpc_listen.port(), DEFAULT_GRPC_PORT);
        assert_eq!(c.replication.discovery.peers[1].address, "localhost:4002");
    }

    const TLS: &str = "  tls: {ca: /c/ca.crt, cert: /c/tls.crt, key: /c/tls.key}\n";

    #[test]
    fn clients_take_a_flag_or_rules() {
        let c = Config::from_yaml(&format!("{SEED}server:\n  clients: true\n")).unwrap();
        assert_eq!(
            c.server.clients,
            Clients {
                enabled: true,
                rules: vec![]
            }
        );
        let c = Config::from_yaml(SEED).unwrap();
        assert!(!c.server.clients.enabled, "off by default");
        let rules = "  clients:\n    rules:\n      - identity: \"billing-*\"\n        \
                     queues: [orders, \"orders.*\"]\n        allow: [read, write]\n";
        let c = Config::from_yaml(&format!("{SEED}server:\n{TLS}{rules}")).unwrap();
        assert!(c.server.clients.enabled, "a mapping turns clients on");
        assert_eq!(
            c.server.clients.rules,
            vec![ClientRule {
                identity: "billing-*".into(),
                queues: vec!["orders".into(), "orders.*".into()],
                allow: vec![ClientRight::Read, ClientRight::Write],
            }]
        );
        let off =
            Config::from_yaml(&format!("{SEED}server:\n  clients: {{enabled: false}}\n")).unwrap();
        assert!(!off.server.clients.enabled);

        // Rules need TLS; an unknown right and an unknown key are named with their path.
        let e = err(&format!("{SEED}server:\n{rules}"));
        assert!(
            e.starts_with("server.clients.rules: need `server.tls`"),
            "{e}"
        );
        let e = err(&format!(
            "{SEED}server:\n{TLS}{}",
            rules.replace("[read, write]", "[read, admin]")
        ));
        assert!(
            e.starts_with("server.clients.rules[0].allow[1]: unknown variant `admin`"),
            "{e}"
        );
        assert!(e.contains("`read`") && e.contains("`write`"), "{e}");
        let e = err(&format!(
            "{SEED}server:\n{TLS}{}",
            rules.replace("allow: [read, write]", "allow: []")
        ));
        assert!(
            e.starts_with("server.clients.rules[0].allow: must grant"),
            "{e}"
        );
        let e = err(&format!("{SEED}server:\n  clients: {{enable: true}}\n"));
        assert!(e.starts_with("server.clients.enable: unknown field"), "{e}");
        let e = err(&format!("{SEED}server:\n  clients: yes-please\n"));
        assert!(e.starts_with("server.clients: "), "{e}");
    }

    #[test]
    fn a_peer_may_name_its_certificate_identity() {
        let c = Config::from_yaml(&SEED.replace(
            "address: 127.0.0.1:4001\n",
            "address: 127.0.0.1:4001\n        identity: repliq-q9m4z\n",
        ))
        .unwrap();
        let peers = &c.replication.discovery.peers;
        assert_eq!(
            (peers[0].identity(), peers[1].identity()),
            ("repliq-q9m4z", "c")
        );
        assert_eq!(c.replication.discovery.tls_identity, TlsIdentity::Peer);
        let k = "replication:\n  mode: synchronous\n  discovery:\n    method: kubernetes\n    \
                 label_selector: app=repliq\n    tls_identity: pod\n\
                 queue:\n  capacity: 1024\n  persistence:\n    path: /tmp/repliq\n";
        let c = Config::from_yaml(k).unwrap();
        assert_eq!(c.replication.discovery.tls_identity, TlsIdentity::Pod);
        let m = err(&k.replace("tls_identity: pod", "tls_identity: node"));
        assert!(
            m.contains("tls_identity") || m.contains("unknown variant"),
            "{m}"
        );
    }

    #[test]
    fn errors_name_the_key_and_the_reason() {
        let m = err(&SEED.replace("mode: synchronous", "mode: eventually"));
        assert!(
            m.starts_with("replication.mode: unknown replication mode `eventually`"),
            "{m}"
        );

        let m = err(&SEED.replace("method: static", "method: kubernetes"));
        assert_eq!(
            m,
            "replication.discovery.peers: only for `method: static` (kubernetes discovery finds \
             the peers)"
        );

        let m = err(&SEED.replace("capacity: 1024", "capacity: -3"));
        assert!(m.starts_with("queue.capacity: "), "{m}");

        let m = err(&SEED.replace("capacity: 1024", "capacity: 0"));
        assert_eq!(m, "queue.capacity: must be at least 1");

        let m = err(&SEED.replace("127.0.0.1:4001", "nowhere"));
        assert_eq!(
            m,
            "replication.discovery.peers[0].address: `nowhere` is not a `host:port` address"
        );

        let m = err(&SEED.replace("name: c", "name: b"));
        assert_eq!(
            m,
            "replication.discovery.peers[1].name: node `b` is listed twice"
        );

        let m = err(&SEED.replace(
            "  mode: synchronous",
            "  mode: synchronous\n  required_acks: 3",
        ));
        assert_eq!(
            m,
            "replication.required_acks: 3 acknowledgements required but only 2 other nodes are \
             configured"
        );

        let m = err(&SEED.replace(
            "    path: /tmp/repliq",
            "    path: /tmp/repliq\n    size: 3",
        ));
        assert!(
            m.starts_with("queue.persistence.size: unknown field `size`, expected `path`"),
            "{m}"
        );

        let m = err("queue: {capacity: 1, persistence: {path: /x}}");
        assert!(m.contains("missing field `replication`"), "{m}");
    }

    #[test]
    fn ack_timeout_is_a_key() {
        assert_eq!(
            Config::from_yaml(SEED).unwrap().ack_timeout(),
            std::time::Duration::from_secs(5)
        );
        let c = Config::from_yaml(&SEED.replace(
            "  mode: synchronous\n",
            "  mode: synchronous\n  ack_timeout_ms: 250\n",
        ))
        .unwrap();
        assert_eq!(c.ack_timeout(), std::time::Duration::from_millis(250));
        let m = err(&SEED.replace(
            "  mode: synchronous\n",
            "  mode: synchronous\n  ack_timeout_ms: 0\n",
        ));
        assert_eq!(m, "replication.ack_timeout_ms: must be at least 1");
    }

    #[test]
    fn ack_level_is_a_key() {
        use repliq::replication::AckLevel;
        assert_eq!(
            Config::from_yaml(SEED).unwrap().replication.ack_level,
            AckLevel::Durable
        );
        let c = Config::from_yaml(&SEED.replace(
            "  mode: synchronous\n",
            "  mode: synchronous\n  ack_level: replicated\n",
        ))
        .unwrap();
        assert_eq!(c.replication.ack_level, AckLevel::Replicated);
        let m = err(&SEED.replace(
            "  mode: synchronous\n",
            "  mode: synchronous\n  ack_level: fsync\n",
        ));
        assert!(
            m.starts_with("replication.ack_level: unknown acknowledgement level `fsync`"),
            "{m}"
        );
    }

    #[test]
    fn asynchronous_mode_needs_no_acks() {
        let c =
            Config::from_yaml(&SEED.replace("mode: synchronous", "mode: asynchronous")).unwrap();
        assert_eq!(c.required_acks("node-x"), 0);
    }

    const MEMBERS: &str = "
replication:
  mode: synchronous
  discovery:
    method: static
    members:
      - name: a
        address: a.repliq:31337
      - name: b
        address: b.repliq:31337
      - name: c
        address: c.repliq:31337
queue:
  capacity: 1024
  persistence:
    path: /tmp/repliq
";

    #[test]
    fn members_name_every_node_and_each_node_drops_itself() {
        let c = Config::from_yaml(MEMBERS).unwrap();
        let names = |node: &str| -> Vec<String> {
            c.static_peers(node).into_iter().map(|p| p.name).collect()
        };
        assert_eq!(names("a"), ["b", "c"]);
        assert_eq!(names("c"), ["a", "b"]);
        assert_eq!(c.required_acks("b"), 2, "a node is not its own replica");
        let c = Config::from_yaml(&MEMBERS.replace(
            "  mode: synchronous\n",
            "  mode: synchronous\n  required_acks: 2\n",
        ))
        .unwrap();
        assert_eq!(c.required_acks("a"), 2);
    }

    #[test]
    fn bad_member_lists_name_the_key() {
        let m = err(&MEMBERS.replace("name: c", "name: a"));
        assert_eq!(
            m,
            "replication.discovery.members[2].name: node `a` is listed twice"
        );

        let m = err(&MEMBERS.replace("c.repliq:31337", "c.repliq"));
        assert_eq!(
            m,
            "replication.discovery.members[2].address: `c.repliq` is not a `host:port` address"
        );

        let m = err(&MEMBERS.replace(
            "    members:\n",
            "    peers:\n      - name: x\n        address: x:1\n    members:\n",
        ));
        assert!(
            m.starts_with("replication.discovery.members: give either `peers`"),
            "{m}"
        );

        // Three members are two replicas for each node.
        let m = err(&MEMBERS.replace(
            "  mode: synchronous\n",
            "  mode: synchronous\n  required_acks: 3\n",
        ));
        assert_eq!(
            m,
            "replication.required_acks: 3 acknowledgements required but only 2 other nodes are \
             configured"
        );

        let m = err(&MEMBERS.replace(
            "    method: static\n",
            "    method: kubernetes\n    label_selector: app=repliq\n",
        ));
        assert_eq!(
            m,
            "replication.discovery.members: only for `method: static` (kubernetes discovery \
             finds the peers)"
        );
    }

    #[cfg(feature = "connectors")]
    #[test]
    fn connectors_parse_and_errors_name_the_entry_and_key() {
        let with = |entries: &str| format!("{SEED}connectors:\n{entries}");
        let good = "  - name: out\n    queue: orders\n    dead_letter: orders.dead\n    batch: 64\n    \
                    redis_sink:\n      url: redis://127.0.0.1:6379/\n      stream: orders\n  \
                    - name: in\n    queue: /abs/in\n    format: archived\n    \
                    redis_source: {url: 'redis://127.0.0.1:6379/', stream: s, group: g}\n";
        let c = Config::from_yaml(&with(good)).unwrap();
        assert_eq!(c.connectors.len(), 2);
        let mut out = c.connectors[0].clone();
        assert_eq!(out.batch, 64);
        assert_eq!(out.kind.key(), "redis_sink");
        out.resolve_paths(Path::new("/var/lib/repliq"));
        assert_eq!(out.queue, Path::new("/var/lib/repliq/orders"));
        assert_eq!(
            out.dead_letter.as_deref(),
            Some(Path::new("/var/lib/repliq/orders.dead"))
        );
        assert_eq!(c.connectors[1].format, repliq_connect::Format::Archived);
        assert!(Config::from_yaml(SEED).unwrap().connectors.is_empty());

        let m = err(&with(&good.replace("batch: 64", "batch: 0")));
        assert_eq!(m, "connectors[0].batch: 0 is not in 1..=65536");
        let m = err(&with(&good.replace("dead_letter:", "dead_leter:")));
        assert!(
            m.starts_with("connectors[0].dead_leter: unknown key"),
            "{m}"
        );
        let m = err(&with(&good.replace("name: in", "name: out")));
        assert_eq!(
            m,
            "connectors[1].name: \"out\" is used by another connector"
        );
        let m = err(&with(
            &good.replace("stream: orders", "stream: orders\n      strem: x"),
        ));
        assert!(m.contains("strem"), "{m}");
        let m = err(&with(&good.replace("format: archived", "format: xml")));
        assert!(m.contains("xml"), "{m}");
    }

    /// The `events:` blocks of the docs parse and pass the checks; with the Slack example's
    /// connector reading the events queue.
    #[cfg(feature = "connectors")]
    #[test]
    fn the_documented_events_examples_are_valid() {
        let block = |doc: &str| {
            let start = doc.find("```yaml\nevents:\n").expect("an events: block") + 8;
            let len = doc[start..].find("```").expect("the block ends");
            Config::from_yaml(&format!("{SEED}{}", &doc[start..start + len])).unwrap()
        };
        let slack = block(include_str!("../../docs/CONNECTORS.md"));
        let events = slack.events.unwrap();
        assert_eq!(events.queue, Path::new(".node/events"));
        assert_eq!(slack.connectors[0].queue, events.queue);
        let observability = block(include_str!("../../docs/OBSERVABILITY.md"));
        assert_eq!(
            observability.events.unwrap().lag_bound_records,
            Some(100_000)
        );
    }

    #[test]
    fn bad_events_settings_name_the_key() {
        let c = Config::from_yaml(&format!("{SEED}events: {{}}\n")).unwrap();
        assert_eq!(c.events.unwrap().interval_ms, 1000);
        assert!(Config::from_yaml(SEED).unwrap().events.is_none());
        for (yaml, key) in [
            ("events: { queue: events }", "events.queue"),
            ("events: { queue: /tmp/repliq/events }", "events.queue"),
            ("events: { interval_ms: 0 }", "events.interval_ms"),
            ("events: { lag_bound_bytes: 0 }", "events.lag_bound_bytes"),
            (
                "events: { lag_bound_records: 0 }",
                "events.lag_bound_records",
            ),
            ("events: { lag_bound: 5 }", "events"),
        ] {
            let m = err(&format!("{SEED}{yaml}\n"));
            assert!(m.starts_with(key), "{yaml}: {m}");
        }
    }
}
