//! Docs that must not drift: the README's generated capability matrix (`readme`) and
//! security model (`readme_security`), the shipped configuration examples
//! (`config_examples`), the deployment files (`deploy`), the Grafana dashboard
//! (`dashboard`), the dependencies' major versions (`dependencies`) and the book's generated
//! reference pages (`reference`).

mod config_examples;
mod dashboard;
mod dependencies;
mod deploy;
mod readme;
mod readme_security;
mod reference;
#[path = "../support/mod.rs"]
mod support;
