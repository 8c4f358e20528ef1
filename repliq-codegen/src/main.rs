//! `repliq-codegen`: the command-line face of the [`repliq_codegen::Builder`].
//!
//! ```text
//! repliq-codegen generate --out-dir src/generated schemas/market.rq
//! repliq-codegen check schemas/*.rq
//! repliq-codegen compat old/market.rq schemas/market.rq
//! ```
//!
//! Exit status: 0 on success (and for a compatible `compat`), 1 for a breaking `compat`, 2 for
//! errors in the schema files or the command line.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use repliq_codegen::{Builder, Error};

#[derive(Debug, Parser)]
#[command(
    name = "repliq-codegen",
    version,
    about = "Rust message types from repliq schema files"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate Rust sources (one `<package>.rs` per package) into a directory.
    Generate {
        /// The output directory (created if missing).
        #[arg(long, short)]
        out_dir: PathBuf,
        /// Also write a file with this name that mounts every package as a module.
        #[arg(long)]
        include_file: Option<String>,
        /// The path of the repliq crate in the generated code.
        #[arg(long, default_value = None)]
        repliq_path: Option<String>,
        /// A directory to search for imported files (repeatable).
        #[arg(long = "include", short = 'I')]
        includes: Vec<PathBuf>,
        /// The schema files.
        #[arg(required = true)]
        schemas: Vec<PathBuf>,
    },
    /// Check schema files and print each type with its fingerprint.
    Check {
        /// A directory to search for imported files (repeatable).
        #[arg(long = "include", short = 'I')]
        includes: Vec<PathBuf>,
        /// The schema files.
        #[arg(required = true)]
        schemas: Vec<PathBuf>,
    },
    /// Compare two versions of a schema file and name every breaking change.
    Compat {
        /// The old version.
        old: PathBuf,
        /// The new version.
        new: PathBuf,
    },
}

fn fail(e: &Error) -> ExitCode {
    match e {
        Error::Schema(d) => d.eprint(std::io::stderr().is_terminal()),
        other => eprintln!("error: {other}"),
    }
    ExitCode::from(2)
}

fn includes(builder: Builder, dirs: Vec<PathBuf>) -> Builder {
    dirs.into_iter().fold(builder, Builder::include)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Generate {
            out_dir,
            include_file,
            repliq_path,
            includes: dirs,
            schemas,
        } => {
            let mut builder = includes(repliq_codegen::configure(), dirs)
                .out_dir(&out_dir)
                .emit_rerun_if_changed(false);
            if let Some(name) = include_file {
                builder = builder.include_file(name);
            }
            if let Some(path) = repliq_path {
                builder = builder.repliq_path(path);
            }
            match builder.compile(&schemas) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            }
        }
        Command::Check {
            includes: dirs,
            schemas,
        } => match includes(repliq_codegen::configure(), dirs).check(&schemas) {
            Ok(types) => {
                for t in types {
                    println!("{:#018x}  {:<7}  {}", t.fingerprint, t.kind, t.name);
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::Compat { old, new } => match repliq_codegen::compat(&old, &new) {
            Ok(report) => {
                println!("{report}");
                if report.is_compatible() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Err(e) => fail(&e),
        },
    }
}
