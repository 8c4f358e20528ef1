//! `schema.json`: the descriptor of the queue's message type, stored next to the meta file so
//! that tools and other languages can read records without the Rust type (`docs/FORMAT.md`,
//! "Schema file").
//!
//! The file is optional (queues created before it existed have none) and written once: under a
//! temporary name, synced, then published with `link(2)`, which fails if the name exists. The
//! first typed handle that opens a queue without one writes it; a replica writes the text the
//! primary sent. Readers trust it only if its fingerprint equals the meta file's.

use std::io::Write;
use std::path::Path;

use crate::descriptor::Schema;
use crate::{QueueError, Result};

/// The file name inside the queue directory.
pub(crate) const SCHEMA_FILE: &str = "schema.json";

/// Publishes `text` as the queue's `schema.json` unless one exists. `Ok(false)` if it existed.
pub(crate) fn publish(dir: &Path, text: &str) -> Result<bool> {
    let path = dir.join(SCHEMA_FILE);
    if path.exists() {
        return Ok(false);
    }
    let tmp = super::temp_path(dir, "tmp");
    let result = (|| {
        let mut file = super::perms::create_new(dir, std::fs::OpenOptions::new().write(true), &tmp)
            .map_err(|e| QueueError::io(format!("creating {}", tmp.display()), e))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| QueueError::io(format!("writing {}", tmp.display()), e))?;
        match std::fs::hard_link(&tmp, &path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(QueueError::io(format!("publishing {}", path.display()), e)),
        }
    })();
    let _ = std::fs::remove_file(&tmp);
    result
}

/// Removes `schema.json` if it holds exactly `text` (a schema published for a queue this process
/// then did not create). Best effort.
pub(crate) fn retract(dir: &Path, text: &str) {
    let path = dir.join(SCHEMA_FILE);
    if std::fs::read_to_string(&path).is_ok_and(|held| held == text) {
        let _ = std::fs::remove_file(&path);
    }
}

/// The text of the queue's `schema.json`, if it has one.
pub(crate) fn read_text(dir: &Path) -> Result<Option<String>> {
    let path = dir.join(SCHEMA_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(QueueError::io(format!("reading {}", path.display()), e)),
    }
}

/// Reads and checks the schema of the queue at `dir`: `Ok(None)` if the queue has no
/// `schema.json` (created by an older version, or by a primary that did not send one).
///
/// The schema is checked against itself (its descriptor must hash to its fingerprint) and
/// against the queue's meta file (same fingerprint and type name). Opens files read-only.
///
/// # Errors
///
/// [`QueueError::Io`] if a file cannot be read, [`QueueError::Corrupt`] if `schema.json` is not
/// a valid schema or names another type than the meta file.
pub fn read_schema(dir: impl AsRef<Path>) -> Result<Option<Schema>> {
    let dir = dir.as_ref();
    let Some(text) = read_text(dir)? else {
        return Ok(None);
    };
    let path = dir.join(SCHEMA_FILE);
    let corrupt = |reason: String| QueueError::Corrupt {
        path: path.clone(),
        offset: 0,
        reason,
    };
    let schema = Schema::from_json(&text).map_err(|e| corrupt(e.to_string()))?;
    let meta = super::meta::read_config(dir)?;
    if meta.fingerprint != schema.fingerprint || meta.type_name != schema.name {
        return Err(corrupt(format!(
            "describes `{}` ({:#018x}) but the queue holds `{}` ({:#018x})",
            schema.name, schema.fingerprint, meta.type_name, meta.fingerprint
        )));
    }
    Ok(Some(schema))
}
