//! The seed README's sample, made real: a parent process creates `my_queue` (capacity 1024),
//! enqueues a greeting and spawns a child process; the child opens the queue by path, dequeues the
//! greeting (zero-copy mapped journal, no daemon) and writes it to its stdout; the parent prints
//! what the child received.
//!
//! ```text
//! cargo run -p repliq-examples --bin parent_child
//! Child process received: Hello from parent!
//! ```

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use repliq::{PersistentQueue, ReplicatedQueueImpl};

/// The message the two processes exchange.
#[repliq::message(name = "examples.Greeting")]
#[derive(Debug, Clone, PartialEq)]
pub struct Greeting {
    /// The text.
    pub text: String,
}

fn parent() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::env::temp_dir().join(format!("repliq-parent-child-{}", std::process::id()));
    let path = root.join("my_queue");
    let result = run_parent(&path);
    let _ = std::fs::remove_dir_all(&root);
    result
}

fn run_parent(path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let mut queue = ReplicatedQueueImpl::<Greeting>::new(path, 1024)?;
    queue.enqueue(&Greeting {
        text: "Hello from parent!".into(),
    })?;

    let output = Command::new(std::env::current_exe()?)
        .arg("child")
        .arg(path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()?;
    if !output.status.success() {
        return Err(format!("child process failed: {}", output.status).into());
    }
    let received = String::from_utf8(output.stdout)?;
    println!("Child process received: {}", received.trim_end());
    Ok(())
}

fn child(path: PathBuf) -> Result<(), Box<dyn std::error::Error>> {
    let mut queue = ReplicatedQueueImpl::<Greeting>::open(&path)?;
    // The parent enqueued before spawning us, so the message is there; wait a little anyway.
    let greeting = match queue.dequeue()? {
        Some(g) => g,
        None => queue
            .dequeue_wait(Some(Duration::from_secs(5)))?
            .ok_or("no message arrived within 5 s")?,
    };
    println!("{}", greeting.text);
    Ok(())
}

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let result = match (args.next(), args.next()) {
        (Some(cmd), Some(path)) if cmd == "child" => child(PathBuf::from(path)),
        _ => parent(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
