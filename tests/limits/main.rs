//! Resource bounds of the real `mecha` binary, each server a child process measured through
//! `/proc`: the README's first minute, bind errors, start-up health, connection, time, body,
//! item and depth limits (`bounds`), a bounded flood (`flood`), and the red-team attacks on
//! memory and connections (`redteam_resources`). The tests that load the machine on purpose
//! run alone (`proc::alone`), the others beside each other (`proc::beside_others`).

mod bounds;
mod flood;
mod proc;
mod redteam_resources;
#[path = "../support/mod.rs"]
mod support;
