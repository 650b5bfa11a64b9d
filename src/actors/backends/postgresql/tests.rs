//! Pure unit tests of the PostgreSQL backend (the database-backed ones are in
//! `tests/postgres.rs` and the conformance suite).
