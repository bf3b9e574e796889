//! mtp: a fleet of per-customer OpenClaw gateway containers, run the GitOps way.
//!
//! Data flows one way: files -> desired state -> (live state) -> plan -> apply -> report.

pub mod apply;
pub mod backup;
pub mod cli;
pub mod doctor;
pub mod engine;
pub mod fleet;
pub mod gateway;
pub mod harden;
pub mod logs;
pub mod manifest;
pub mod plan;
pub mod redact;
pub mod render;
pub mod report;
pub mod review;
pub mod secrets;
pub mod status;
pub mod subnets;
pub mod usage;
pub mod watch;
