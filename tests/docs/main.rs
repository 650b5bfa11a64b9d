//! Docs that must not drift: the README's generated capability matrix (`readme`) and
//! security model (`readme_security`), the shipped configuration examples
//! (`config_examples`), the deployment files (`deploy`) and the Grafana dashboard
//! (`dashboard`).

mod config_examples;
mod dashboard;
mod deploy;
mod readme;
mod readme_security;
#[path = "../support/mod.rs"]
mod support;
