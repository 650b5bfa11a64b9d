//! QueryStateAlpha1: the app's items matching a query, its keys given back without the
//! app's prefix.

use crate::actors::StoreHandle;
use crate::capabilities::lint::{LintOp, Location};
use crate::capabilities::{Feature, Needs, Shape};
use crate::error::Error;
use crate::model::{Metadata, Operation, QueryRequest, QueryResponse};

use super::checks::shape_of;
use super::{Scope, StateOp, Validated};

/// QueryStateAlpha1.
pub struct Query;

/// A QueryStateAlpha1 as a door hands it over.
#[derive(Debug, Clone)]
pub struct QueryInput {
    /// The JSON query text.
    pub query: String,
    /// Request metadata.
    pub metadata: Metadata,
}

impl StateOp for Query {
    const OP: Operation = Operation::Query;
    const URL_LINT: LintOp = LintOp::Query;
    type Request = QueryInput;
    type Exec = QueryRequest;
    type Reply = QueryResponse;

    fn metadata<'r>(req: &'r QueryInput, each: &mut dyn FnMut(&'r Metadata, LintOp, Location)) {
        each(&req.metadata, LintOp::Query, Location::Request);
    }

    /// A query has no consistency option.
    fn needs(shape: &Shape) -> Needs {
        Needs::NONE
            .with(Feature::Query)
            .with_if(Feature::PartitionKey, shape.partition_key)
    }

    fn validate(at: &Scope<'_>, req: QueryInput) -> Result<Validated<Self>, Error> {
        let shape = shape_of(1, &req.metadata);
        let exec = QueryRequest {
            query: req.query,
            metadata: req.metadata,
            key_prefix: at.info.key_prefix.scan_prefix(at.app, &at.info.name),
        };
        Ok(Validated::Run(exec, shape))
    }

    async fn execute(
        handle: StoreHandle,
        store: &str,
        req: QueryRequest,
    ) -> Result<QueryResponse, Error> {
        let prefix = req.key_prefix.clone();
        let mut resp = handle
            .query(req)
            .await
            .map_err(|e| Error::from_store(e, Self::OP, store, ""))?;
        for item in &mut resp.results {
            if let Some(k) = item.key.strip_prefix(&prefix) {
                item.key = k.to_owned();
            }
        }
        Ok(resp)
    }
}
