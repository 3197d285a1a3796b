//! raygate: an admission webhook and CLI that hold Ray clusters on Kubernetes to a platform plan.

pub mod commands;
pub mod engine;
pub mod manifest;
pub mod policy;
pub mod ray;
pub mod report;
pub mod rules;

pub use engine::{Context, Coverage, Decision, Engine};
pub use policy::{Action, Mode, Policy};
