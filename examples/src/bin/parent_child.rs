//! The README's first sample: a `#[tokio::main]` parent creates `my_queue`
//! (capacity 1024), `enqueue(..).await`s "Hello from parent!" and spawns a child process with
//! tokio's process API; the child opens the queue by path and `dequeue().await`s the greeting
//! (zero-copy mapped journal, no daemon) and writes it to its stdout; the parent prints what the
//! child received.
//!
//! ```text
//! cargo run -p repliq-examples --bin parent_child
//! Child process received: Hello from parent!
//! ```

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use repliq::{PersistentQueue, Queue, ReplicatedQueueImpl};
use tokio::process::Command;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn parent() -> Result<(), BoxError> {
    let root = std::env::temp_dir().join(format!("repliq-parent-child-{}", std::process::id()));
    let path = root.join("my_queue");
    let result = run_parent(&path).await;
    let _ = std::fs::remove_dir_all(&root);
    result
}

async fn run_parent(path: &Path) -> Result<(), BoxError> {
    let queue = ReplicatedQueueImpl::<String>::new(path, 1024)?;
    queue.enqueue("Hello from parent!".to_string()).await?;

    let output = Command::new(std::env::current_exe()?)
        .arg("child")
        .arg(path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .await?;
    if !output.status.success() {
        return Err(format!("child process failed: {}", output.status).into());
    }
    let received = String::from_utf8(output.stdout)?;
    println!("Child process received: {}", received.trim_end());
    Ok(())
}

async fn child(path: PathBuf) -> Result<(), BoxError> {
    let queue = ReplicatedQueueImpl::<String>::open(&path)?;
    // The parent enqueued before spawning us, so the message is there; wait a little anyway.
    let greeting = match queue.dequeue().await? {
        Some(g) => g,
        None => queue
            .recv_timeout(Duration::from_secs(5))
            .await?
            .ok_or("no message arrived within 5 s")?,
    };
    println!("{greeting}");
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let result = match (args.next(), args.next()) {
        (Some(cmd), Some(path)) if cmd == "child" => child(PathBuf::from(path)).await,
        _ => parent().await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
