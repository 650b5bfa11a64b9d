//! Policy and portability: negotiation strategies (`negotiation*`), the built-in defaults
//! (`compatible_defaults`), the metadata lint (`lint`) and the portability report
//! (`portability`).

mod compatible_defaults;
mod lint;
mod negotiation;
mod negotiation_jetstream;
mod portability;
mod portable_to;
#[path = "../support/mod.rs"]
mod support;
