//! Turning records into message bodies and back, through the queue's stored schema.

use repliq::descriptor::Schema;

use crate::Format;

/// The body a sink sends for a record: JSON text rendered from the schema, or the archived
/// bytes. `Err` (a record that does not render) is a permanent failure.
pub(crate) fn outgoing(
    format: Format,
    schema: Option<&Schema>,
    payload: &[u8],
) -> Result<Vec<u8>, String> {
    match (format, schema) {
        (Format::Archived, _) => Ok(payload.to_vec()),
        (Format::Json, Some(schema)) => {
            // Straight to text: no JSON value is built in between.
            let mut body = Vec::with_capacity(payload.len() * 2);
            repliq::descriptor::to_json_text(&schema.root, payload, &mut body)
                .map_err(|e| format!("the record does not render as a `{}`: {e}", schema.name))?;
            Ok(body)
        }
        (Format::Json, None) => Err("the queue has no schema.json".into()),
    }
}

/// The archived payload a source enqueues for a body. `Err` (JSON that is not JSON or does not
/// fit the queue's type) is a permanent failure; archived bytes are validated by the append.
pub(crate) fn incoming(
    format: Format,
    schema: Option<&Schema>,
    body: &[u8],
) -> Result<Vec<u8>, String> {
    match (format, schema) {
        (Format::Archived, _) => Ok(body.to_vec()),
        (Format::Json, Some(schema)) => {
            let value: serde_json::Value =
                serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
            repliq::descriptor::from_json(&schema.root, &value)
                .map_err(|e| format!("JSON does not fit `{}`: {e}", schema.name))
        }
        (Format::Json, None) => Err("the queue has no schema.json".into()),
    }
}
