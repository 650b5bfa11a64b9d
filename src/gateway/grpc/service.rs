//! `impl Dapr`: thin handlers, extract → gateway → convert, in daprd's order of checks
//! (auth in the door, store lookup with the capability check, empty shortcut, then the
//! gateway actor's key validation and store call).

use prost::Message;
use tonic::{Request, Response, Status};

use super::convert;
use super::door::Caller;
use super::proto::runtime::dapr_server::Dapr;
use super::proto::runtime::{
    DeleteBulkStateRequest, DeleteStateRequest, ExecuteStateTransactionRequest,
    GetBulkStateRequest, GetBulkStateResponse, GetMetadataRequest, GetMetadataResponse,
    GetStateRequest, GetStateResponse, QueryStateRequest, QueryStateResponse, RegisteredComponents,
    SaveStateRequest, SetMetadataRequest,
};
use super::status::{annotate, status};
use crate::capabilities::Receipt;
use crate::capabilities::lint::Finding;
use crate::error::{Error, ErrorKind};
use crate::gateway::ops::{
    BulkDelete, BulkGet, BulkGetInput, Delete, Get, GetInput, Query, QueryInput, Save, Transaction,
};
use crate::gateway::{Answer, AppId, Gateway, RUNTIME_VERSION, StateOp};
use crate::model::{Metadata, Operation, Protocol};

/// The gRPC service of the gRPC thread, over that thread's gateway.
pub struct DaprService {
    gateway: Gateway,
}

impl DaprService {
    /// A service sending every call to `gateway`.
    pub fn new(gateway: Gateway) -> DaprService {
        DaprService { gateway }
    }

    /// The calling app, as the door authenticated it.
    fn caller<T>(&self, req: &Request<T>) -> Result<AppId, Status> {
        match req.extensions().get::<Caller>() {
            Some(Caller(app)) => Ok(app.clone()),
            // Not behind the door (never in Mecha): authenticate as a caller without token.
            None => self
                .gateway
                .catalog()
                .apps()
                .authenticate(None)
                .map_err(fail),
        }
    }

    /// Runs one state operation through the gateway pipeline.
    async fn run<O: StateOp>(
        &self,
        app: AppId,
        store: String,
        request: Result<O::Request, Error>,
    ) -> Result<Answer<O::Reply>, Status> {
        self.gateway
            .state::<O>(app, store, Protocol::Grpc, request, Metadata::new())
            .await
            .map_err(fail)
    }

    /// Runs one state operation and renders its reply with `render`.
    async fn call<O: StateOp, T: Message>(
        &self,
        app: AppId,
        store: String,
        request: Result<O::Request, Error>,
        render: impl FnOnce(O::Reply) -> T,
    ) -> Result<Response<T>, Status> {
        let answer = self.run::<O>(app, store, request).await?;
        self.reply(O::OP, render(answer.reply), &answer.receipt, &answer.lint)
    }

    /// A reply with its receipt as response metadata, unless it is larger than the
    /// message-size limit (checked here, where the error can still be a proper status,
    /// rather than failing in tonic's encoder).
    fn reply<T: Message>(
        &self,
        op: Operation,
        msg: T,
        receipt: &Receipt,
        lint: &[Finding],
    ) -> Result<Response<T>, Status> {
        let limit = self.gateway.catalog().limits.max_body_size;
        let size = msg.encoded_len();
        if size > limit {
            return Err(fail(Error::new(
                ErrorKind::ResponseTooLarge { size, limit },
                op,
            )));
        }
        let mut resp = Response::new(msg);
        annotate(resp.metadata_mut(), receipt.header_value().as_deref(), lint);
        Ok(resp)
    }
}

/// SaveState's items, JSON values checked (depth) and re-serialized as the HTTP door does:
/// on this thread when the JSON values are small together, else on the bounded pool of
/// blocking threads the HTTP door uses, so a big parse never stalls the other calls served
/// by this thread.
async fn save_items(
    gateway: &Gateway,
    states: Vec<super::proto::common::StateItem>,
    op: Operation,
) -> Result<Vec<crate::model::SetRequest>, Error> {
    let (max_depth, threshold) = {
        let catalog = gateway.catalog();
        (
            catalog.limits.max_json_depth,
            catalog.limits.blocking_parse_threshold,
        )
    };
    let json_bytes: usize = states
        .iter()
        .filter(|i| convert::is_json(i))
        .map(|i| i.value.len())
        .sum();
    let work = move || {
        states
            .into_iter()
            .map(|item| convert::set_request(item, op, Some(max_depth)))
            .collect::<Result<Vec<_>, Error>>()
    };
    if json_bytes <= threshold {
        return work();
    }
    let _permit = crate::gateway::parse_permits()
        .acquire()
        .await
        .map_err(|e| Error::new(ErrorKind::BodyRead, op).detail(e.to_string()))?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::new(ErrorKind::BodyRead, op).detail(e.to_string()))?
}

/// Renders a gateway error, logging server-side failures.
fn fail(e: Error) -> Status {
    crate::gateway::door::log_failure(Protocol::Grpc, &e);
    status(&e)
}

#[tonic::async_trait]
impl Dapr for DaprService {
    async fn get_state(
        &self,
        req: Request<GetStateRequest>,
    ) -> Result<Response<GetStateResponse>, Status> {
        let app = self.caller(&req)?;
        let r = req.into_inner();
        let request = Ok(GetInput {
            key: r.key,
            consistency: convert::consistency(r.consistency),
            metadata: r.metadata,
        });
        self.call::<Get, _>(app, r.store_name, request, convert::get_response)
            .await
    }

    async fn get_bulk_state(
        &self,
        req: Request<GetBulkStateRequest>,
    ) -> Result<Response<GetBulkStateResponse>, Status> {
        let app = self.caller(&req)?;
        let r = req.into_inner();
        let request = Ok(BulkGetInput {
            keys: r.keys,
            parallelism: r.parallelism,
            metadata: r.metadata,
        });
        self.call::<BulkGet, _>(app, r.store_name, request, convert::bulk_response)
            .await
    }

    async fn save_state(&self, req: Request<SaveStateRequest>) -> Result<Response<()>, Status> {
        let app = self.caller(&req)?;
        let r = req.into_inner();
        let store = r.store_name;
        let request = save_items(&self.gateway, r.states, Save::OP)
            .await
            .map_err(|e| e.store(&store));
        self.call::<Save, _>(app, store, request, |()| ()).await
    }

    async fn query_state_alpha1(
        &self,
        req: Request<QueryStateRequest>,
    ) -> Result<Response<QueryStateResponse>, Status> {
        let app = self.caller(&req)?;
        let r = req.into_inner();
        let request = Ok(QueryInput {
            query: r.query,
            metadata: r.metadata,
        });
        self.call::<Query, _>(app, r.store_name, request, convert::query_response)
            .await
    }

    async fn delete_state(&self, req: Request<DeleteStateRequest>) -> Result<Response<()>, Status> {
        let app = self.caller(&req)?;
        let r = req.into_inner();
        let item = convert::delete_request(r.key, r.etag, r.options, r.metadata);
        self.call::<Delete, _>(app, r.store_name, Ok(item), |()| ())
            .await
    }

    async fn delete_bulk_state(
        &self,
        req: Request<DeleteBulkStateRequest>,
    ) -> Result<Response<()>, Status> {
        let app = self.caller(&req)?;
        let r = req.into_inner();
        let items = r
            .states
            .into_iter()
            .map(|s| convert::delete_request(s.key, s.etag, s.options, s.metadata))
            .collect();
        self.call::<BulkDelete, _>(app, r.store_name, Ok(items), |()| ())
            .await
    }

    async fn execute_state_transaction(
        &self,
        req: Request<ExecuteStateTransactionRequest>,
    ) -> Result<Response<()>, Status> {
        let app = self.caller(&req)?;
        let r = req.into_inner();
        let store = r.store_name;
        let request = convert::transaction(r.operations, r.metadata).map_err(|e| e.store(&store));
        self.call::<Transaction, _>(app, store, request, |()| ())
            .await
    }

    async fn get_metadata(
        &self,
        req: Request<GetMetadataRequest>,
    ) -> Result<Response<GetMetadataResponse>, Status> {
        let app = self.caller(&req)?;
        let view = self.gateway.catalog().metadata_view(&app, RUNTIME_VERSION);
        let resp = GetMetadataResponse {
            id: view.id,
            registered_components: view
                .components
                .into_iter()
                .map(|s| RegisteredComponents {
                    name: s.name,
                    r#type: s.component_type,
                    version: s.version,
                    capabilities: s.capabilities,
                })
                .collect(),
            extended_metadata: view.extended.into_iter().collect(),
            runtime_version: view.runtime_version.to_owned(),
            ..GetMetadataResponse::default()
        };
        self.reply(Operation::Other, resp, &Receipt::default(), &[])
    }

    async fn set_metadata(&self, req: Request<SetMetadataRequest>) -> Result<Response<()>, Status> {
        let app = self.caller(&req)?;
        let r = req.into_inner();
        self.gateway
            .catalog()
            .apps()
            .set_extended(&app, &r.key, &r.value)
            .map_err(fail)?;
        Ok(Response::new(()))
    }
}
