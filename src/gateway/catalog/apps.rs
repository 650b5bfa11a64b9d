//! The apps side of the catalog: who is calling (tokens), what each app may spend (quotas),
//! its extended metadata and its requirements.

use std::collections::HashMap;
use std::sync::Arc;

use super::Turned;
use crate::config::{Settings, TokenSource};
use crate::error::{Error, ErrorKind};
use crate::gateway::auth::Tokens;
use crate::gateway::extended::ExtendedMetadata;
use crate::gateway::quota::{BodyLimits, Permit, Quotas, Refusal};
use crate::model::{AppId, Operation};

/// Every app of one configuration version: tokens, quotas, extended metadata, requirements.
pub struct Apps {
    default_app: AppId,
    tokens: Tokens,
    metrics_token: Tokens,
    quotas: Arc<Quotas>,
    extended: Arc<ExtendedMetadata>,
    requires: HashMap<String, Vec<&'static str>>,
}

impl Apps {
    /// The apps of `settings`, `default_app` the caller when no app is configured. Quota
    /// budgets of apps whose quota did not change and extended metadata carry over from
    /// `previous`.
    pub(super) fn build(settings: &Settings, default_app: &str, previous: Option<&Apps>) -> Apps {
        let limits = &settings.limits;
        let default_app = AppId::from(default_app);
        let apps: Vec<(AppId, &crate::config::AppConfig)> = settings
            .apps
            .iter()
            .map(|a| (AppId::from(a.id.as_str()), a))
            .collect();
        // daprd's DAPR_API_TOKEN is the token of the --app-id app.
        let dapr_token = settings
            .api_token
            .clone()
            .map(|t| (default_app.clone(), TokenSource::Value(t)));
        let tokens = Tokens::new(
            apps.iter()
                .map(|(id, a)| (id.clone(), a.token.clone()))
                .chain(dapr_token),
        );
        let mut quotas: Vec<_> = apps.iter().map(|(id, a)| (id.clone(), a.quota)).collect();
        if !quotas.iter().any(|(id, _)| *id == default_app) {
            quotas.push((default_app.clone(), settings.quota));
        }
        let body = BodyLimits {
            in_flight: limits.resources.max_body_bytes_in_flight,
            wait: limits.resources.body_memory_wait,
        };
        Apps {
            tokens,
            metrics_token: Tokens::new(
                settings
                    .metrics_token
                    .clone()
                    .map(|t| (AppId::from("metrics"), t)),
            ),
            quotas: Arc::new(Quotas::carried(
                quotas,
                previous.map(|p| &*p.quotas),
                Some(&body),
            )),
            // Restart-only limits bound it (see `crate::reload`): the apps' attributes stay.
            extended: previous.map_or_else(
                || Arc::new(ExtendedMetadata::new(limits)),
                |p| p.extended.clone(),
            ),
            default_app,
            requires: settings
                .apps
                .iter()
                .filter(|a| !a.requires.is_empty())
                .map(|a| (a.id.clone(), a.requires.clone()))
                .collect(),
        }
    }

    /// What `app` requires of the stores it uses (`apps[].requires`), if anything.
    pub fn requires(&self, app: &str) -> Option<&[&'static str]> {
        self.requires.get(app).map(Vec::as_slice)
    }

    /// `app`'s own extended metadata attributes.
    pub fn attributes(&self, app: &AppId) -> std::collections::BTreeMap<String, String> {
        self.extended.get(app)
    }

    /// The app id used when no apps are configured.
    pub fn default_app(&self) -> &AppId {
        &self.default_app
    }
    /// Whether callers must present an API token.
    pub fn requires_token(&self) -> bool {
        !self.tokens.is_empty()
    }
    /// The calling app, from its `dapr-api-token` (ignored when no token is configured:
    /// no apps and no `DAPR_API_TOKEN`).
    pub fn authenticate(&self, token: Option<&str>) -> Result<AppId, Error> {
        if self.tokens.is_empty() {
            return Ok(self.default_app.clone());
        }
        match token {
            None | Some("") => Err(Error::new(ErrorKind::Unauthorized, Operation::Other)
                .detail("missing api token in request metadata")),
            Some(t) => self.tokens.find(t).ok_or_else(|| {
                Error::new(ErrorKind::Unauthorized, Operation::Other)
                    .detail("authentication error: api token mismatch")
            }),
        }
    }
    /// The first step of every call on both doors: who is calling (its `dapr-api-token`),
    /// then whether its app may call now (its quota). The permit is held until the call has
    /// answered; the doors only render a refusal, after its delay.
    pub fn admit_call(&self, token: Option<&str>) -> Result<(AppId, Permit), Box<Turned>> {
        let app = self.authenticate(token).map_err(|error| {
            Box::new(Turned {
                app: None,
                error,
                delay: std::time::Duration::ZERO,
            })
        })?;
        match self.admit(&app) {
            Ok(permit) => Ok((app, permit)),
            Err(Refusal { error, delay }) => Err(Box::new(Turned {
                app: Some(app),
                error,
                delay,
            })),
        }
    }
    /// Whether `token` is a valid app token (only then do health answers carry error text).
    pub fn is_valid_token(&self, token: Option<&str>) -> bool {
        token.is_some_and(|t| self.tokens.find(t).is_some())
    }
    /// Whether `token` may read `/metrics` (always, when no metrics token is configured).
    pub fn metrics_allowed(&self, token: Option<&str>) -> bool {
        self.metrics_token.is_empty() || token.is_some_and(|t| self.metrics_token.find(t).is_some())
    }
    /// Whether `token` is the operator's (the metrics token), when one is configured: it reads
    /// any app's portability report.
    pub fn is_operator_token(&self, token: Option<&str>) -> bool {
        !self.metrics_token.is_empty()
            && token.is_some_and(|t| self.metrics_token.find(t).is_some())
    }
    /// Whether any token comes from a file that [`Apps::reload_tokens`] must watch.
    pub fn has_token_files(&self) -> bool {
        self.tokens.has_files() || self.metrics_token.has_files()
    }
    /// Re-reads token files that changed.
    pub fn reload_tokens(&self) {
        self.tokens.reload();
        self.metrics_token.reload();
    }
    /// Admits one request of `app` under its quota (hold the permit until the answer).
    pub fn admit(&self, app: &AppId) -> Result<Permit, Refusal> {
        self.quotas.admit(app)
    }
    /// Sets one of `app`'s extended metadata attributes (`PUT /v1.0/metadata/{key}`, gRPC
    /// `SetMetadata`), within the app's metadata limits.
    pub fn set_extended(&self, app: &AppId, key: &str, value: &str) -> Result<(), Error> {
        self.extended.set(app, key, value)
    }
    /// The largest extended-metadata value an app can set, in bytes.
    pub fn max_extended_value(&self) -> usize {
        self.extended.max_value_bytes()
    }
}
