//! The tail watcher: a thread that sleeps on the journal's commit futex and reports each advance
//! of the tail as an event.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

use super::Event;
use crate::journal::{Journal, Reader, notify};
use crate::{QueueError, Result};

/// Watches the journal's tail on a thread (futex wait) and reports each advance.
pub(super) fn spawn_tail_watcher(
    journal: Arc<Journal>,
    events: mpsc::Sender<Event>,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>> {
    let mut reader = Reader::at(journal.clone(), u64::MAX, false)?;
    let mut reported = reader.seq();
    let _ = events.blocking_send(Event::Committed(reported));
    std::thread::Builder::new()
        .name("repliq-tail".into())
        .spawn(move || {
            let meta = &journal.meta;
            let to_tail = |reader: &mut Reader, reported: u64| -> Result<bool> {
                reader.walk_to_tail()?;
                Ok(reader.seq() > reported)
            };
            while !stop.load(Ordering::Acquire) {
                // No spinning before the sleep (unlike `notify::wait_until`): on a small machine
                // a spinning watcher takes the CPU the producer and the replication task need,
                // and a commit wakes it through the futex anyway.
                let advanced = match to_tail(&mut reader, reported) {
                    Ok(true) => Ok(Some(())),
                    Ok(false) => {
                        let mut found = None;
                        notify::sleep_announced(
                            meta.data_notify(),
                            meta.data_waiters(),
                            Duration::from_millis(100),
                            || match to_tail(&mut reader, reported) {
                                Ok(false) => true,
                                other => {
                                    found = Some(other);
                                    false
                                }
                            },
                        );
                        let moved = match found {
                            Some(moved) => moved,
                            None => to_tail(&mut reader, reported),
                        };
                        moved.map(|m| m.then_some(()))
                    }
                    Err(e) => Err(e),
                };
                match advanced {
                    Ok(Some(())) => {
                        reported = reader.seq();
                        if events.blocking_send(Event::Committed(reported)).is_err() {
                            return;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        // Said once, here; the daemon reports the queue as damaged.
                        tracing::error!(error = %e, "replication tail watcher stops");
                        let _ = events.blocking_send(Event::Damaged(e.to_string()));
                        return;
                    }
                }
            }
        })
        .map_err(|e| QueueError::io("starting the replication tail watcher", e))
}
