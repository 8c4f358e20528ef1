//! `Describe`: a queue's message type and `schema.json`, for clients without the Rust type.
//!
//! Any node that holds the queue answers from its files (a replica holds the primary's
//! schema). Reading the description needs the `read` right, as consuming does.

use std::path::Path;

use repliq::client::proto::{DescribeReply, QueueDescription, describe_reply};
use repliq::replication::{ReplicationState, Role};

use super::authorize::Caller;
use super::{ClientService, Refusal};
use crate::config::ClientRight;

/// The answer to `Describe` for `queue`: its description or a refusal.
pub async fn answer(service: &ClientService, caller: &Caller, queue: &str) -> DescribeReply {
    let described = match service
        .authorize(caller, queue, ClientRight::Read)
        .and_then(|()| service.queue_dir(queue))
    {
        Ok(dir) => {
            let node = service.node.clone();
            tokio::task::spawn_blocking(move || describe(&dir, node))
                .await
                .unwrap_or_else(|e| Err(Refusal::internal(format!("describing the queue: {e}"))))
        }
        Err(r) => Err(r),
    };
    DescribeReply {
        kind: Some(match described {
            Ok(d) => describe_reply::Kind::Description(d),
            Err(r) => describe_reply::Kind::Refusal(r.0),
        }),
    }
}

/// Reads the description from the queue's files (blocking).
fn describe(dir: &Path, node: String) -> Result<QueueDescription, Refusal> {
    if !dir.join("queue.meta").exists() {
        return Err(Refusal::not_found(dir));
    }
    let schema = repliq::read_schema(dir)
        .map_err(|e| Refusal::internal(format!("{}: {e}", dir.display())))?
        .ok_or_else(|| {
            Refusal::bad_request(format!(
                "{} has no schema.json (written only by a repliq older than schema files): its \
                 records cannot be described",
                dir.display()
            ))
        })?;
    // No replication state: a queue that was never replicated, written here.
    let primary = ReplicationState::load(dir).map_or(true, |s| s.role != Role::Replica);
    Ok(QueueDescription {
        message_type: schema.name.to_string(),
        fingerprint: schema.fingerprint,
        schema_json: schema.to_json_string(),
        node,
        primary,
    })
}
