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
use super::status::status;
use crate::error::{Error, ErrorKind, Operation};
use crate::gateway::{
    AppId, DeleteState, ExecuteTransaction, Gateway, GetBulkState, GetState, QueryState,
    RUNTIME_VERSION, SaveState, Target,
};

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
            None => self.gateway.catalog().authenticate(None).map_err(fail),
        }
    }

    fn target(&self, app: &AppId, store: &str, op: Operation) -> Result<Target, Status> {
        self.gateway
            .catalog()
            .resolve(app, store, op)
            .map(|store| Target {
                app: app.clone(),
                store,
            })
            .map_err(fail)
    }

    /// A reply, unless it is larger than the message-size limit (checked here, where the
    /// error can still be a proper status, rather than failing in tonic's encoder).
    fn reply<T: Message>(&self, op: Operation, msg: T) -> Result<Response<T>, Status> {
        let limit = self.gateway.catalog().limits.max_body_size;
        let size = msg.encoded_len();
        if size > limit {
            return Err(fail(Error::new(
                ErrorKind::ResponseTooLarge { size, limit },
                op,
            )));
        }
        Ok(Response::new(msg))
    }
}

/// Renders a gateway error, logging server-side failures.
fn fail(e: Error) -> Status {
    // Never the key, value or request detail: only code, operation and store.
    if e.is_client_error() {
        tracing::debug!(error = %e.log_summary(), "grpc request rejected");
    } else {
        tracing::warn!(error = %e.log_summary(), "grpc request failed");
    }
    status(&e)
}

#[tonic::async_trait]
impl Dapr for DaprService {
    async fn get_state(
        &self,
        req: Request<GetStateRequest>,
    ) -> Result<Response<GetStateResponse>, Status> {
        let op = Operation::Get;
        let app = self.caller(&req)?;
        let r = req.into_inner();
        let target = self.target(&app, &r.store_name, op)?;
        let msg = GetState {
            target,
            key: r.key,
            consistency: convert::consistency(r.consistency),
            metadata: r.metadata,
        };
        let entry = self.gateway.call(op, msg).await.map_err(fail)?;
        self.reply(op, convert::get_response(entry))
    }

    async fn get_bulk_state(
        &self,
        req: Request<GetBulkStateRequest>,
    ) -> Result<Response<GetBulkStateResponse>, Status> {
        let op = Operation::BulkGet;
        let app = self.caller(&req)?;
        let r = req.into_inner();
        let target = self.target(&app, &r.store_name, op)?;
        let msg = GetBulkState {
            target,
            keys: r.keys,
            parallelism: r.parallelism,
            metadata: r.metadata,
        };
        let items = self.gateway.call(op, msg).await.map_err(fail)?;
        self.reply(op, convert::bulk_response(items))
    }

    async fn save_state(&self, req: Request<SaveStateRequest>) -> Result<Response<()>, Status> {
        let op = Operation::Save;
        let app = self.caller(&req)?;
        let r = req.into_inner();
        let target = self.target(&app, &r.store_name, op)?;
        if r.states.is_empty() {
            return Ok(Response::new(()));
        }
        let items = r
            .states
            .into_iter()
            .map(|item| convert::set_request(item, op, true))
            .collect::<Result<Vec<_>, Error>>()
            .map_err(|e| fail(e.store(&r.store_name)))?;
        self.gateway
            .call(op, SaveState { target, items })
            .await
            .map_err(fail)?;
        Ok(Response::new(()))
    }

    async fn query_state_alpha1(
        &self,
        req: Request<QueryStateRequest>,
    ) -> Result<Response<QueryStateResponse>, Status> {
        let op = Operation::Query;
        let app = self.caller(&req)?;
        let r = req.into_inner();
        let target = self.target(&app, &r.store_name, op)?;
        let msg = QueryState {
            target,
            query: r.query,
            metadata: r.metadata,
        };
        let resp = self.gateway.call(op, msg).await.map_err(fail)?;
        self.reply(op, convert::query_response(resp))
    }

    async fn delete_state(&self, req: Request<DeleteStateRequest>) -> Result<Response<()>, Status> {
        let op = Operation::Delete;
        let app = self.caller(&req)?;
        let r = req.into_inner();
        let target = self.target(&app, &r.store_name, op)?;
        let item = convert::delete_request(r.key, r.etag, r.options, r.metadata);
        let msg = DeleteState {
            target,
            items: vec![item],
            bulk: false,
        };
        self.gateway.call(op, msg).await.map_err(fail)?;
        Ok(Response::new(()))
    }

    async fn delete_bulk_state(
        &self,
        req: Request<DeleteBulkStateRequest>,
    ) -> Result<Response<()>, Status> {
        let op = Operation::BulkDelete;
        let app = self.caller(&req)?;
        let r = req.into_inner();
        let target = self.target(&app, &r.store_name, op)?;
        if r.states.is_empty() {
            return Ok(Response::new(()));
        }
        let items = r
            .states
            .into_iter()
            .map(|s| convert::delete_request(s.key, s.etag, s.options, s.metadata))
            .collect();
        let msg = DeleteState {
            target,
            items,
            bulk: true,
        };
        self.gateway.call(op, msg).await.map_err(fail)?;
        Ok(Response::new(()))
    }

    async fn execute_state_transaction(
        &self,
        req: Request<ExecuteStateTransactionRequest>,
    ) -> Result<Response<()>, Status> {
        let op = Operation::Transaction;
        let app = self.caller(&req)?;
        let r = req.into_inner();
        // The capability check (in resolve) runs before the operations are looked at.
        let target = self.target(&app, &r.store_name, op)?;
        let request = convert::transaction(r.operations, r.metadata)
            .map_err(|e| fail(e.store(&r.store_name)))?;
        if request.operations.is_empty() {
            return Ok(Response::new(()));
        }
        self.gateway
            .call(op, ExecuteTransaction { target, request })
            .await
            .map_err(fail)?;
        Ok(Response::new(()))
    }

    async fn get_metadata(
        &self,
        req: Request<GetMetadataRequest>,
    ) -> Result<Response<GetMetadataResponse>, Status> {
        let app = self.caller(&req)?;
        let catalog = self.gateway.catalog();
        let registered_components = catalog
            .stores()
            .iter()
            .filter(|s| s.visible_to(&app))
            .map(|s| RegisteredComponents {
                name: s.name.clone(),
                r#type: s.component_type.clone(),
                version: s.version.clone(),
                capabilities: s.capabilities.dapr_strings(),
            })
            .collect();
        let resp = GetMetadataResponse {
            id: app.to_string(),
            registered_components,
            extended_metadata: catalog
                .extended(&app, RUNTIME_VERSION)
                .into_iter()
                .collect(),
            runtime_version: RUNTIME_VERSION.to_owned(),
            ..GetMetadataResponse::default()
        };
        self.reply(Operation::Other, resp)
    }

    async fn set_metadata(&self, req: Request<SetMetadataRequest>) -> Result<Response<()>, Status> {
        let app = self.caller(&req)?;
        let r = req.into_inner();
        self.gateway
            .catalog()
            .set_extended(&app, &r.key, &r.value)
            .map_err(fail)?;
        Ok(Response::new(()))
    }
}
