//! `mecha-empty-tonic`: a `Dapr` gRPC server that answers GetState with a canned value and
//! does nothing else, the cost of tonic itself. `mecha-bench` starts it as a process of its
//! own, so the load generator (`h2load`) drives it exactly as it drives Mecha and its CPU is
//! accounted as the served side's. Arguments: the value size in bytes and the number of
//! serving threads (Mecha's arrangement: one current-thread runtime per thread, each
//! accepting on a clone of one listener). Prints `listening <addr>` once ready, then serves
//! until killed.

use std::io::Write;

use mecha::gateway::grpc::proto::runtime::dapr_server::{Dapr, DaprServer};
use mecha::gateway::grpc::proto::runtime::{
    DeleteBulkStateRequest, DeleteStateRequest, ExecuteStateTransactionRequest,
    GetBulkStateRequest, GetBulkStateResponse, GetMetadataRequest, GetMetadataResponse,
    GetStateRequest, GetStateResponse, QueryStateRequest, QueryStateResponse, SaveStateRequest,
    SetMetadataRequest,
};
use tonic::{Response, Status};

struct EmptyDapr {
    canned: GetStateResponse,
}

type R<T> = Result<Response<T>, Status>;

fn empty<T>() -> R<T> {
    Err(Status::unimplemented("empty"))
}

#[tonic::async_trait]
impl Dapr for EmptyDapr {
    async fn get_state(&self, _: tonic::Request<GetStateRequest>) -> R<GetStateResponse> {
        Ok(Response::new(self.canned.clone()))
    }
    async fn get_bulk_state(
        &self,
        _: tonic::Request<GetBulkStateRequest>,
    ) -> R<GetBulkStateResponse> {
        empty()
    }
    async fn save_state(&self, _: tonic::Request<SaveStateRequest>) -> R<()> {
        empty()
    }
    async fn query_state_alpha1(
        &self,
        _: tonic::Request<QueryStateRequest>,
    ) -> R<QueryStateResponse> {
        empty()
    }
    async fn delete_state(&self, _: tonic::Request<DeleteStateRequest>) -> R<()> {
        empty()
    }
    async fn delete_bulk_state(&self, _: tonic::Request<DeleteBulkStateRequest>) -> R<()> {
        empty()
    }
    async fn execute_state_transaction(
        &self,
        _: tonic::Request<ExecuteStateTransactionRequest>,
    ) -> R<()> {
        empty()
    }
    async fn get_metadata(&self, _: tonic::Request<GetMetadataRequest>) -> R<GetMetadataResponse> {
        empty()
    }
    async fn set_metadata(&self, _: tonic::Request<SetMetadataRequest>) -> R<()> {
        empty()
    }
}

fn arg(i: usize, what: &str) -> Result<usize, String> {
    std::env::args()
        .nth(i)
        .ok_or_else(|| {
            format!("usage: mecha-empty-tonic <value bytes> <threads> ({what} missing)")
        })?
        .parse()
        .map_err(|e| format!("{what}: {e}"))
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mecha-empty-tonic: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let (size, threads) = (arg(1, "value size")?, arg(2, "threads")?);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    // The value Mecha returns for the benchmark's keys: a JSON string of `size` bytes.
    let mut data = vec![b'x'; size.max(2)];
    data[0] = b'"';
    data[size.max(2) - 1] = b'"';
    let canned = GetStateResponse {
        data,
        etag: "1".into(),
        metadata: Default::default(),
    };
    let mut serving = Vec::new();
    for i in 0..threads.max(1) {
        let listener = listener.try_clone().map_err(|e| e.to_string())?;
        let canned = canned.clone();
        let thread = std::thread::Builder::new()
            .name(format!("empty-tonic-{i}"))
            .spawn(move || -> Result<(), String> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
                    let incoming = tonic::transport::server::TcpIncoming::from(listener)
                        .with_nodelay(Some(true));
                    tonic::transport::Server::builder()
                        .add_service(DaprServer::new(EmptyDapr { canned }))
                        .serve_with_incoming(incoming)
                        .await
                        .map_err(|e| e.to_string())
                })
            })
            .map_err(|e| e.to_string())?;
        serving.push(thread);
    }
    let mut out = std::io::stdout();
    writeln!(out, "listening {addr}").map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())?;
    for t in serving {
        t.join()
            .map_err(|_| "a serving thread panicked".to_owned())??;
    }
    Ok(())
}
