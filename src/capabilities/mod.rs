//! Capabilities: what a store can do, as pure data.
//!
//! This module owns the capability vocabulary (Dapr's feature strings plus the
//! few Mecha needs to tell apart), the effective matrix of a store after the
//! operator's policy ([`Matrix`]), negotiation of one request against it
//! ([`negotiate`] → [`Plan`] → [`Receipt`]), the matrix rendering used by
//! `mecha check` and the README drift test, and the parser of the state query
//! language that `QUERY_API` stores share, and the request-metadata lint ([`lint`]).
//! It performs no I/O; backends declare
//! their capabilities in their descriptor and the gateway consults them.

mod capability;
pub mod lint;
mod matrix;
mod policy;
pub mod portability;
pub mod query;
pub mod query_eval;
mod render;

pub use capability::{Capability, CapabilitySet};
pub use matrix::{Cell, Matrix};
pub use policy::{
    Action, Baseline, Feature, Needs, Origin, Plan, Policy, PolicyProblem, RECEIPT_HEADER, Receipt,
    Shape, Status, Step, StoreTraits, emulation, ignorable, negotiate,
};
pub use render::{MatrixRow, render_effective, render_matrix};
