//! `repliqd`, the repliq node daemon: replicates the queues under its persistence path and
//! serves `/metrics`, `/healthz` and `/readyz`. See the `repliqd` library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use repliqd::telemetry::{self, LogFormat as Format};
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
    // Logs, and traces over OTLP when configured; the exporter's channel lives on the runtime.
    let format = match args.log_format {
        LogFormat::Text => Format::Text,
        LogFormat::Json => Format::Json,
    };
    let telemetry = {
        let _in_runtime = runtime.enter();
        match telemetry::init(format, config.tracing.as_ref(), &args.node_name) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("repliqd: {e}");
                return ExitCode::from(2);
            }
        }
    };
    if let Some(t) = &telemetry.target {
        tracing::info!(endpoint = %t.endpoint, service = %t.service_name, "exporting traces over OTLP");
    }
    let result = runtime.block_on(async {
        let shutdown = terminated()
            .map_err(|e| repliq::QueueError::io("installing the signal handlers", e))?;
        server::run(config, args.node_name, shutdown, |bound| {
            // One line on standard output, for supervisors and tests that bind port 0.
            println!("repliqd listening grpc={} http={}", bound.grpc, bound.http);
        })
        .await
    });
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Through the logger, so a JSON log stays JSON to its last line.
            tracing::error!(error = %e, "repliqd: exiting with status 1");
            ExitCode::FAILURE
        }
    };
    // Flush the last spans (a failover's, a shutdown's) while the runtime still runs.
    telemetry.shutdown();
    code
}
