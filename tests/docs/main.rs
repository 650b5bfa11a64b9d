//! Docs that must not drift: the README's generated capability matrix (`readme`) and
//! security model (`readme_security`), the shipped configuration examples
//! (`config_examples`), the deployment files (`deploy`), the Grafana dashboard
//! (`dashboard`) and the dependencies' major versions (`dependencies`).

mod config_examples;
mod dashboard;
mod dependencies;
mod deploy;
mod readme;
mod readme_security;
#[path = "../support/mod.rs"]
mod support;
