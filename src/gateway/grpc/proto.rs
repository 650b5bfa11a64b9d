//! The generated protobuf and tonic code (see `build.rs` and `proto/README.md`), nested as
//! the proto packages so prost's relative `super::` paths between packages resolve.
//!
//! Public so integration tests (and embedders) can use the generated client; nothing outside
//! `gateway::grpc` builds on these types.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// `dapr.*` proto packages.
pub mod dapr {
    /// `dapr.proto.*`.
    pub mod proto {
        /// `dapr.proto.common.*`.
        pub mod common {
            /// `dapr.proto.common.v1`: `StateItem`, `Etag`, `StateOptions`.
            pub mod v1 {
                tonic::include_proto!("dapr.proto.common.v1");
            }
        }
        /// `dapr.proto.runtime.*`.
        pub mod runtime {
            /// `dapr.proto.runtime.v1`: service `Dapr` and its messages.
            pub mod v1 {
                tonic::include_proto!("dapr.proto.runtime.v1");
            }
        }
    }
}

pub use dapr::proto::common::v1 as common;
pub use dapr::proto::runtime::v1 as runtime;
