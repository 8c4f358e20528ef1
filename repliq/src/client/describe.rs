//! [`describe`]: a queue's message type and schema from a node, for clients without the Rust
//! type (the `repliq produce` and `repliq consume` commands encode and render JSON with it).

use super::ClientError;
use super::connect;
use super::proto::client_client::ClientClient;
use super::proto::{DescribeRequest, describe_reply};
use crate::descriptor::Schema;

/// What a node says about a queue (`Describe` in `client.proto`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueDescription {
    /// The queue's name.
    pub queue: String,
    /// `Message::NAME` of the type the queue holds.
    pub message_type: String,
    /// Its fingerprint.
    pub fingerprint: u64,
    /// The queue's `schema.json`, checked: its descriptor hashes to `fingerprint`.
    pub schema: Schema,
    /// The node that answered.
    pub node: String,
    /// Whether that node holds the queue's primary (`false`: a replica).
    pub primary: bool,
}

/// Asks the node at `addr` (`host:port` or `http://host:port`) for the message type and schema
/// of `queue`. Any node that holds the queue answers (a replica too); with authorization on, the
/// client needs the right to read the queue.
///
/// # Errors
///
/// [`ClientError::Refused`] ([`NotFound`](super::Refused::NotFound),
/// [`PermissionDenied`](super::Refused::PermissionDenied),
/// [`BadRequest`](super::Refused::BadRequest) for a queue without `schema.json`);
/// [`ClientError::Transport`]; [`ClientError::Protocol`] if the node is older than `Describe`
/// or sent a schema that does not match the type it named.
pub async fn describe(addr: &str, queue: &str) -> Result<QueueDescription, ClientError> {
    describe_over(addr, queue, None).await
}

/// As [`describe`], speaking TLS to the node (feature `client-tls`).
///
/// # Errors
///
/// As [`describe`]; [`ClientError::Tls`] if the TLS files cannot be read.
#[cfg(feature = "client-tls")]
pub async fn describe_tls(
    addr: &str,
    queue: &str,
    tls: &super::ClientTls,
) -> Result<QueueDescription, ClientError> {
    describe_over(addr, queue, Some(tls)).await
}

async fn describe_over(
    addr: &str,
    queue: &str,
    tls: Option<&connect::Tls>,
) -> Result<QueueDescription, ClientError> {
    let mut client = ClientClient::new(connect::channel(addr, tls, None).await?);
    let reply = client
        .describe(DescribeRequest {
            queue: queue.to_owned(),
        })
        .await
        .map_err(|s| match s.code() {
            tonic::Code::Unimplemented => ClientError::protocol(
                addr,
                "the node does not serve Describe (a repliqd older than it)",
            ),
            _ => ClientError::transport(addr, s),
        })?
        .into_inner();
    match reply.kind {
        Some(describe_reply::Kind::Description(d)) => {
            let schema = Schema::from_json(&d.schema_json).map_err(|e| {
                ClientError::protocol(addr, format!("the schema of {queue:?} is invalid: {e}"))
            })?;
            if schema.name != d.message_type || schema.fingerprint != d.fingerprint {
                return Err(ClientError::protocol(
                    addr,
                    format!(
                        "the schema of {queue:?} describes `{}` ({:#018x}), the node named `{}` \
                         ({:#018x})",
                        schema.name, schema.fingerprint, d.message_type, d.fingerprint
                    ),
                ));
            }
            Ok(QueueDescription {
                queue: queue.to_owned(),
                message_type: d.message_type,
                fingerprint: d.fingerprint,
                schema,
                node: d.node,
                primary: d.primary,
            })
        }
        Some(describe_reply::Kind::Refusal(r)) => Err(ClientError::refusal(addr, r)),
        None => Err(ClientError::protocol(addr, "an empty answer to Describe")),
    }
}
