//! raygate: an admission webhook and CLI that hold Ray clusters on Kubernetes to a platform plan.

pub mod admission;
pub mod audit;
pub mod cluster;
pub mod commands;
pub mod connections;
pub mod engine;
pub mod leader;
pub mod manifest;
pub mod metrics;
pub mod policy;
pub mod publish;
pub mod quantity;
pub mod ray;
pub mod ray_command;
pub mod ray_version;
pub mod report;
pub mod rule_id;
pub mod rules;
pub mod server;
pub mod tls;
pub mod yaml;
pub mod yaml_edit;

pub use engine::{Context, Decision, Engine, Judged};
pub use policy::{Action, Mode, Policy};
