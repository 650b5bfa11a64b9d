//! Tenancy: what one app can see or change of another's state (`isolation`,
//! `redteam_tenancy`), and key namespaces that cannot collide (`namespaces`, a property
//! test).

mod isolation;
mod namespaces;
mod redteam_tenancy;
#[path = "../support/mod.rs"]
mod support;
