//! Shared by the benchmark's binaries and tests: the in-process allocation count of the hot
//! path ([`allocs`]).

pub mod allocs;
