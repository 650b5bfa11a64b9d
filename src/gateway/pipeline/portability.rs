//! The app's portability targets (`apps[].portableTo`), checked on every call of the app:
//! what the call needs (capabilities, the operation itself, request-metadata keys) against
//! each target type's matrix. A call a target would serve differently (rejected there,
//! dropped there while served here, a key the target type does not understand) gets a
//! `not-portable` finding; under `portability: reject` it fails before anything is applied.

use super::lint::lint_request;
use crate::capabilities::lint::{Finding, LintCode, Location, TargetGap};
use crate::capabilities::portability::{PortabilityMode, call_gaps};
use crate::capabilities::{Matrix, Needs};
use crate::error::{Error, ErrorKind};
use crate::gateway::catalog::TargetType;
use crate::gateway::ops::StateOp;
use crate::gateway::{Catalog, StoreInfo};
use crate::metrics;
use crate::model::{AppId, Metadata, Operation};

/// Whether a finding of `code` on a target means the target type does not understand a key
/// this store does (the `ttlInSeconds`/`partitionKey` cases are capabilities: see
/// [`capability_gaps`]).
fn key_not_understood(code: LintCode) -> bool {
    matches!(code, LintCode::StoreSpecificKey | LintCode::UnknownKey)
}

/// The metadata keys of `request` that a target does not understand while this store does
/// (no finding here for the same key at the same place).
pub(super) fn key_gaps<'t, O: StateOp>(
    targets: impl Iterator<Item = &'t TargetType>,
    request: &O::Request,
    url: &Metadata,
    here: &[Finding],
) -> Vec<Finding> {
    let mut out = Vec::new();
    for t in targets {
        let there = lint_request::<O>(request, url, &t.lint_target());
        for f in there.into_iter().filter(|f| key_not_understood(f.code)) {
            let flagged_here = here
                .iter()
                .any(|h| h.key == f.key && h.location == f.location);
            if !flagged_here {
                out.push(Finding {
                    code: LintCode::NotPortable,
                    suggestion: None,
                    target: Some(TargetGap {
                        target: t.component_type,
                        capability: None,
                    }),
                    ..f
                });
            }
        }
    }
    out
}

/// The capabilities a call needing `needs` on a store with matrix `here` would lose or be
/// refused on each target.
pub(super) fn capability_gaps<'t>(
    targets: impl Iterator<Item = &'t TargetType>,
    needs: Needs,
    here: &Matrix,
) -> Vec<Finding> {
    let mut out = Vec::new();
    for t in targets {
        for f in call_gaps(needs, here, &t.matrix) {
            out.push(Finding {
                code: LintCode::NotPortable,
                key: f.policy_name().to_owned(),
                location: Location::Request,
                suggestion: None,
                detail: Some(format!(
                    "{} is {} here and {} on {}",
                    f.policy_name(),
                    here.status(f),
                    t.matrix.status(f),
                    t.component_type
                )),
                target: Some(TargetGap {
                    target: t.component_type,
                    capability: Some(f.policy_name()),
                }),
            });
        }
    }
    out
}

/// The verdict on the gaps: counted and (rate-limited) logged; under `reject` the call fails
/// naming the app, each target type and each capability or key; under `warn` they travel
/// with the answer.
pub(super) fn judge(
    catalog: &Catalog,
    app: &AppId,
    index: usize,
    info: &StoreInfo,
    op: Operation,
    mode: PortabilityMode,
    gaps: Vec<Finding>,
) -> Result<Vec<Finding>, Error> {
    if gaps.is_empty() {
        return Ok(gaps);
    }
    let code = LintCode::NotPortable;
    for _ in &gaps {
        metrics::record_lint_finding(app, &info.name, code.as_str(), code.severity().as_str());
    }
    let list = gaps
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    if catalog.lint_log_due(app, index, code) {
        tracing::warn!(
            app_id = %app, store = %info.name, mode = mode.as_str(), findings = %list,
            "call not portable to the app's targets (at most one line a minute per app and store)"
        );
    }
    match mode {
        PortabilityMode::Warn => Ok(gaps),
        PortabilityMode::Reject => Err(Error::new(ErrorKind::NotPortable, op)
            .store(&info.name)
            .app(app.as_ref())
            .detail(list)),
    }
}
