//! `repliqd`, the repliq node daemon: replicates the queues under its persistence path and
//! serves `/metrics`, `/healthz` and `/readyz`. See the `repliqd` library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use repliqd::{self as server, Config};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// The repliq node daemon.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The configuration file (the seed's `config.yaml` shape).
    #[arg(long, short, default_value = "/etc/repliq/config.yaml")]
    config: PathBuf,
    /// This node's name; peers know it by this name.
    #[arg(long, env = "NODE_NAME")]
    node_name: String,
    /// Log format on standard error.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("REPLIQ_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal, never in files or log collectors.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        // One object per line with stable keys: timestamp, level, target, message, then the
        // event's own fields (node, queue, epoch, replica, task, error, ...) at the top level
        // (docs/OBSERVABILITY.md, "Logs").
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init(),
    }
}

/// Registers the SIGTERM and SIGINT handlers now (before the daemon says it is listening, so a
/// signal sent right after that is never lost) and returns the future that completes on either.
fn terminated() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(args.log_format);
    let config = match Config::from_file(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("repliqd: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("repliqd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let shutdown = terminated()
            .map_err(|e| repliq::QueueError::io("installing the signal handlers", e))?;
        server::run(config, args.node_name, shutdown, |bound| {
            // One line on standard output, for supervisors and tests that bind port 0.
            println!("repliqd listening grpc={} http={}", bound.grpc, bound.http);
        })
        .await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Through the logger, so a JSON log stays JSON to its last line.
            tracing::error!(error = %e, "repliqd: exiting with status 1");
            ExitCode::FAILURE
        }
    }
}
