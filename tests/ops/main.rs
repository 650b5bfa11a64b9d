//! Operations: reload (`reload`), many replicas (`replicas`), resiliency policies
//! (`resiliency_postgres`), supervision of failing stores (`store_faults`), the store actors
//! (`actors`), TLS (`tls`), the binary's flags and signals (`binary`), daprd's conventions and
//! log hygiene (`conventions`).

mod actors;
mod binary;
mod conventions;
mod reload;
mod replicas;
mod resiliency_postgres;
mod store_faults;
#[path = "../support/mod.rs"]
mod support;
mod tls;
