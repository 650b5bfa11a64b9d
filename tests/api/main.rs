//! The API, row by row: every HTTP route (`http_api`) and gRPC RPC (`grpc`) of the wire
//! spec, HTTP/gRPC parity, random HTTP input (`fuzz_http`), and strict ETags on both doors
//! and every store (`etag_strict`).

mod etag_strict;
mod fuzz_http;
mod grpc;
mod http_api;
mod query;
#[path = "../support/mod.rs"]
mod support;
