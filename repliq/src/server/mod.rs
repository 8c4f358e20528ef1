//! The library half of the `repliqd` node daemon.

pub mod config;

pub use config::Config;
