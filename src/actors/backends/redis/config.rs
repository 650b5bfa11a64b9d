//! The component metadata of `state.redis`, read into [`Settings`]: timeouts, retries, the
//! pool, replicas, and the addresses of one node or of a cluster's seeds.

use std::time::Duration;

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo};

use super::super::{ComponentConfig, parse_duration};

pub(super) const DEFAULT_MAX_TRANSACTION_OPS: usize = 1000;

/// Settings read from component metadata.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub(super) dial_timeout: Duration,
    pub(super) read_timeout: Duration,
    pub(super) write_timeout: Duration,
    pub(super) max_retries: u32,
    pub(super) min_backoff: Duration,
    pub(super) max_backoff: Duration,
    pub(super) pool_size: usize,
    pub(super) pool_timeout: Duration,
    pub(super) default_ttl: Option<u32>,
    pub(super) replicas: u32,
    pub(super) wait_timeout: Duration,
    pub(super) max_transaction_ops: usize,
    /// `redisType: cluster`.
    pub(super) cluster: bool,
    /// `clusterKeyPlacement: prefix`: the key prefix becomes the hash tag.
    pub(super) place_by_prefix: bool,
}

/// A retry interval: a Go duration, bare seconds (bare nanoseconds from 1 000 000 up, as in
/// Dapr's docs), or `-1` for none.
pub(super) fn parse_interval(raw: &str) -> Result<Duration, String> {
    let v = raw.trim();
    if v == "-1" {
        return Ok(Duration::ZERO);
    }
    if let Ok(n) = v.parse::<u64>()
        && n >= 1_000_000
    {
        return Ok(Duration::from_nanos(n));
    }
    parse_duration(v)
}

pub(super) fn is_cluster(cfg: &ComponentConfig) -> bool {
    cfg.get("redisType")
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("cluster"))
}

/// The node to connect to, or with `redisType: cluster` the seed nodes (at least one).
pub(super) fn connection_infos(cfg: &ComponentConfig) -> Result<Vec<ConnectionInfo>, String> {
    let hosts = cfg.get("redisHost").unwrap_or_default();
    if !is_cluster(cfg) {
        if hosts.contains(',') {
            return Err(format!(
                "redisHost '{}' lists several hosts, which needs redisType: cluster (Sentinel is not supported)",
                hosts.trim()
            ));
        }
        return Ok(vec![connection_info(cfg, hosts)?]);
    }
    if cfg.get("redisDB").is_some_and(|d| d.trim() != "0") {
        return Err("redisDB: Redis Cluster has only database 0".into());
    }
    let infos = hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| connection_info(cfg, h))
        .collect::<Result<Vec<_>, _>>()?;
    if infos.is_empty() {
        return Err("redisHost must name at least one seed node".into());
    }
    Ok(infos)
}

pub(super) fn connection_info(cfg: &ComponentConfig, host: &str) -> Result<ConnectionInfo, String> {
    let host = host.trim();
    if host.is_empty() {
        return Err("redisHost must not be empty".into());
    }
    let info = if host.contains("://") {
        if host.starts_with("rediss://") {
            return Err("rediss:// (TLS) is not supported by this build".into());
        }
        host.into_connection_info()
            // The URL may hold a password: leave it out of the message.
            .map_err(|e| format!("redisHost is not a valid Redis URL: {e}"))?
    } else {
        let (name, port) = split_host_port(host)?;
        ConnectionAddr::Tcp(name, port)
            .into_connection_info()
            .map_err(|e| e.to_string())?
    };
    let mut redis = info.redis_settings().clone();
    if let Some(user) = cfg.get("redisUsername").filter(|u| !u.is_empty()) {
        redis = redis.set_username(user);
    }
    if let Some(pass) = cfg.get("redisPassword").filter(|p| !p.is_empty()) {
        redis = redis.set_password(pass);
    }
    if cfg.get("redisDB").is_some() {
        redis = redis.set_db(cfg.int_or("redisDB", 0));
    }
    Ok(info.set_redis_settings(redis))
}

pub(super) fn split_host_port(host: &str) -> Result<(String, u16), String> {
    let bad = || format!("redisHost '{host}' is not host:port");
    if let Some(rest) = host.strip_prefix('[') {
        let (name, tail) = rest.split_once(']').ok_or_else(bad)?;
        let port = match tail.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad())?,
            None if tail.is_empty() => 6379,
            None => return Err(bad()),
        };
        return Ok((name.to_owned(), port));
    }
    match host.rsplit_once(':') {
        Some((name, _)) if name.contains(':') => Ok((host.to_owned(), 6379)),
        Some((name, port)) if !name.is_empty() => {
            Ok((name.to_owned(), port.parse().map_err(|_| bad())?))
        }
        Some(_) => Err(bad()),
        None => Ok((host.to_owned(), 6379)),
    }
}

pub(super) fn settings(cfg: &ComponentConfig) -> Result<Settings, String> {
    if cfg.bool_or("failover", false)
        || cfg.get("sentinelMasterName").is_some_and(|s| !s.is_empty())
    {
        return Err("failover/sentinelMasterName: Redis Sentinel is not supported; point redisHost at the primary".into());
    }
    let cluster = is_cluster(cfg);
    let place_by_prefix = cfg
        .get("clusterKeyPlacement")
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("prefix"));
    if place_by_prefix && !cluster {
        return Err("clusterKeyPlacement needs redisType: cluster".into());
    }
    if cfg.bool_or("enableTLS", false) {
        return Err("enableTLS: TLS is not supported by this build of Mecha; use a TLS tunnel (e.g. stunnel) to a local port".into());
    }
    if ["clientCert", "clientKey"]
        .iter()
        .any(|k| cfg.get(k).is_some_and(|v| !v.is_empty()))
    {
        return Err("clientCert/clientKey need TLS, which this build does not support".into());
    }
    if cfg.bool_or("useEntraID", false) {
        return Err("useEntraID is not supported; use redisUsername/redisPassword".into());
    }
    if cfg
        .get("queryIndexes")
        .is_some_and(|q| !q.trim().is_empty())
    {
        tracing::warn!(
            store = %cfg.name,
            "queryIndexes ignored: Mecha's redis store has no query API (queries answer 'not supported')"
        );
    }
    let interval = |name: &str, default: Duration| -> Result<Duration, String> {
        match cfg.get(name) {
            None | Some("") => Ok(default),
            Some(v) => parse_interval(v).map_err(|e| format!("{name}: {e}")),
        }
    };
    let read_timeout = cfg.duration_or("readTimeout", Duration::from_secs(2));
    let retries = cfg.int_or("redisMaxRetries", cfg.int_or("maxRetries", 3));
    let max_backoff = match cfg.get("redisMaxRetryInterval") {
        Some(v) if !v.is_empty() => interval("redisMaxRetryInterval", Duration::ZERO)?,
        _ => interval("maxRetryBackoff", Duration::from_secs(2))?,
    };
    let s = Settings {
        dial_timeout: cfg.duration_or("dialTimeout", Duration::from_secs(2)),
        read_timeout,
        write_timeout: cfg.duration_or("writeTimeout", read_timeout),
        max_retries: u32::try_from(retries).unwrap_or(0),
        min_backoff: interval("redisMinRetryInterval", Duration::from_millis(8))?,
        max_backoff,
        pool_size: cfg.int_or("poolSize", 10) as usize,
        pool_timeout: cfg.duration_or("poolTimeout", read_timeout),
        default_ttl: u32::try_from(cfg.int_or("ttlInSeconds", 0))
            .ok()
            .filter(|t| *t > 0),
        replicas: cfg.int_or("redisReplicas", 0) as u32,
        wait_timeout: cfg.duration_or("waitTimeout", Duration::from_secs(1)),
        max_transaction_ops: cfg.int_or("maxTransactionOps", DEFAULT_MAX_TRANSACTION_OPS as i64)
            as usize,
        cluster,
        place_by_prefix,
    };
    for (name, d) in [
        ("dialTimeout", s.dial_timeout),
        ("readTimeout", s.read_timeout),
        ("writeTimeout", s.write_timeout),
    ] {
        if d.is_zero() {
            return Err(format!("{name} must be greater than zero"));
        }
    }
    if s.replicas > 0 && s.wait_timeout.is_zero() {
        return Err("waitTimeout must be greater than zero (WAIT 0 blocks forever)".into());
    }
    Ok(s)
}
