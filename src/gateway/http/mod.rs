//! The HTTP front door: daprd's state, health and metadata routes on actix-web.
//!
//! One catch-all service routes on the raw path ([`router`]), so path cleaning, key
//! unescaping and the 404 fallback behave exactly like daprd. Handlers translate JSON and
//! query strings into gateway messages ([`body`]) and render results and errors
//! ([`respond`]); they decide nothing themselves.

pub mod body;
mod handlers;
pub mod portability;
pub mod respond;
pub mod router;

pub use handlers::{ConnSlot, HttpState, dispatch};
