//! The daemon's configuration file (`repliqd::config::Config::from_yaml`; YAML, and JSON, which
//! YAML contains): arbitrary text gives `QueueError::InvalidConfig` naming the key and the
//! reason, or a valid configuration, never a panic. A configuration that parses is then used the
//! way the daemon uses it at start (`repliqd::run`): its static peers for every member's name,
//! the acknowledgements a synchronous enqueue waits for (and their `u32` form in the node
//! policy), the acknowledgement timeout and the shutdown grace period as deadlines, the
//! replicas' lag bound, the primary's options and the TLS files.
#![no_main]

use libfuzzer_sys::fuzz_target;
use repliq::QueueError;
use repliq::replication::{PrimaryOptions, ReplicaAddr};
use repliqd::config::Config;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let config = match Config::from_yaml(&text) {
        Ok(c) => c,
        Err(e) => {
            assert!(
                matches!(&e, QueueError::InvalidConfig(m) if !m.is_empty()),
                "a configuration that does not parse gives InvalidConfig: {e:?}"
            );
            return;
        }
    };
    let _ = format!("{config:?}");
    let d = &config.replication.discovery;
    let mut names: Vec<String> = d.peers.iter().map(|p| p.name.clone()).collect();
    names.extend(d.members.iter().flatten().map(|p| p.name.clone()));
    names.push(String::new());
    let now = std::time::Instant::now();
    for node in &names {
        let peers = config.static_peers(node);
        assert!(
            peers.iter().all(|p| p.name != *node),
            "a node is not its own peer"
        );
        let acks = config.required_acks(node);
        let _ = u32::try_from(acks).unwrap_or(u32::MAX);
        let replicas: Vec<ReplicaAddr> = peers
            .iter()
            .map(|p| ReplicaAddr::new(p.name.clone(), p.address.clone()))
            .collect();
        let mut options =
            PrimaryOptions::new(node.clone(), replicas.clone(), config.replication.mode);
        options.required_acks = config.required_acks_of(replicas.len());
        options.ack_timeout = config.ack_timeout();
        options.ack_level = config.replication.ack_level;
        options.max_replica_lag_segments = Some(config.max_replica_lag_segments());
        options.drain_timeout = std::time::Duration::from_millis(config.server.shutdown_grace_ms);
        options.tls = config
            .server
            .tls
            .as_ref()
            .map(repliqd::config::TlsConfig::files);
        let _ = format!("{options:?}");
    }
    // The deadlines the daemon computes from them.
    let grace = std::time::Duration::from_millis(config.server.shutdown_grace_ms)
        + std::time::Duration::from_secs(1);
    let _ = now + grace;
    let _ = now + config.ack_timeout();
});
