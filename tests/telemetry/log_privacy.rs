//! The `mecha` binary at `--log-level debug` never writes keys, values, statement parameters
//! or the API token to its log: a marker is written through every state route of five
//! stores (in-memory, Redis, PostgreSQL, SQLite, MySQL), over HTTP and gRPC, and must not
//! appear.

use crate::support;
use crate::support::services::{database_url, drop_pg_table, redis_url};

use mecha::gateway::grpc::proto::common::StateItem;
use mecha::gateway::grpc::proto::runtime::dapr_client::DaprClient;
use mecha::gateway::grpc::proto::runtime::{GetStateRequest, SaveStateRequest};
use support::binary::Process;
use support::sql::SqlScratch;

fn component(name: &str, ty: &str, metadata: &[(&str, &str)]) -> String {
    let mut y = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: {ty}\n  version: v1\n  metadata:\n"
    );
    for (k, v) in metadata {
        y.push_str(&format!("  - name: {k}\n    value: \"{v}\"\n"));
    }
    if metadata.is_empty() {
        y = y.replace("  metadata:\n", "");
    }
    y
}

#[actix_rt::test]
async fn debug_logs_never_carry_keys_values_parameters_or_tokens() {
    let marker = format!("mk{:016x}", rand::random::<u64>());
    let token = format!("tok{:016x}", rand::random::<u64>());
    let table = format!("logp_{:016x}", rand::random::<u64>());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mem.yaml"),
        component("mem", "state.in-memory", &[]),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("redis.yaml"),
        component("redis", "state.redis", &[("redisHost", &redis_url())]),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("pg.yaml"),
        component(
            "pg",
            "state.postgresql",
            &[("connectionString", &database_url()), ("tableName", &table)],
        ),
    )
    .unwrap();
    let sql = SqlScratch::new();
    let sqlite = sql.sqlite("logp.db", &table);
    std::fs::write(
        dir.path().join("sqlite.yaml"),
        component(
            "sqlite",
            "state.sqlite",
            &sqlite
                .iter()
                .map(|(k, v)| (*k, v.as_str()))
                .collect::<Vec<_>>(),
        ),
    )
    .unwrap();
    let mysql = sql.mysql(&table);
    std::fs::write(
        dir.path().join("mysql.yaml"),
        component(
            "mysql",
            "state.mysql",
            &mysql
                .iter()
                .map(|(k, v)| (*k, v.as_str()))
                .collect::<Vec<_>>(),
        ),
    )
    .unwrap();
    let mut mecha = Process::spawn(
        &[
            "--resources-path",
            dir.path().to_str().unwrap(),
            "--config",
            "/dev/null",
            "--log-level",
            "debug",
        ],
        &[("DAPR_API_TOKEN", &token)],
    );
    let (http, grpc) = (mecha.http.clone(), mecha.grpc.clone());

    let client = reqwest::Client::new();
    let call = |method: reqwest::Method, path: String, body: String| {
        let req = client
            .request(method, format!("http://{http}{path}"))
            .header("dapr-api-token", &token)
            .body(body);
        async move { req.send().await.expect("request").status().as_u16() }
    };
    use reqwest::Method as M;
    // DAPR_API_TOKEN is read from the environment: without it, 401; health is exempt.
    let anon = client
        .get(format!("http://{http}/v1.0/state/mem/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), 401);
    // Health is exempt from the token; the stores are ready once their first pings answer
    // (start-up waits for them at most requestTimeout, which a loaded machine can exceed).
    let mut health = 0;
    for _ in 0..100 {
        health = client
            .get(format!("http://{http}/v1.0/healthz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        if health == 204 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(health, 204);
    let key = format!("key-{marker}");
    let value = format!("\"value-{marker}\"");
    for store in ["mem", "redis", "pg", "sqlite", "mysql"] {
        let save =
            format!(r#"[{{"key":"{key}","value":{value}}},{{"key":"{key}2","value":{value}}}]"#);
        assert_eq!(
            call(M::POST, format!("/v1.0/state/{store}"), save).await,
            204,
            "{store}"
        );
        assert_eq!(
            call(M::GET, format!("/v1.0/state/{store}/{key}"), String::new()).await,
            200
        );
        let bulk = format!(r#"{{"keys":["{key}","{key}2"]}}"#);
        assert_eq!(
            call(M::POST, format!("/v1.0/state/{store}/bulk"), bulk).await,
            200
        );
        let tx = format!(
            r#"{{"operations":[{{"operation":"upsert","request":{{"key":"{key}3","value":{value}}}}},{{"operation":"delete","request":{{"key":"{key}2"}}}}]}}"#
        );
        assert_eq!(
            call(M::POST, format!("/v1.0/state/{store}/transaction"), tx).await,
            204
        );
        // Rejected requests are logged at debug too: an illegal key and a bad ETag.
        assert_eq!(
            call(
                M::GET,
                format!("/v1.0/state/{store}/{marker}||x"),
                String::new()
            )
            .await,
            400
        );
        let bad_etag = format!(r#"[{{"key":"{key}","value":{value},"etag":"{marker}"}}]"#);
        let s = call(M::POST, format!("/v1.0/state/{store}"), bad_etag).await;
        assert!(s == 409 || s == 400, "{store}: {s}");
        assert_eq!(
            call(
                M::DELETE,
                format!("/v1.0/state/{store}/{key}"),
                String::new()
            )
            .await,
            204
        );
    }
    let q = format!(r#"{{"filter":{{"EQ":{{"value":"{marker}"}}}}}}"#);
    let s = call(M::POST, "/v1.0-alpha1/state/pg/query".into(), q.clone()).await;
    assert!(s == 200 || s == 204, "query: {s}");
    // Emulated queries (every other store) are logged too, without their body.
    for store in ["mem", "redis", "sqlite", "mysql"] {
        let s = call(
            M::POST,
            format!("/v1.0-alpha1/state/{store}/query"),
            q.clone(),
        )
        .await;
        assert!(s == 200 || s == 204, "{store} query: {s}");
    }
    assert_eq!(
        call(M::PUT, format!("/v1.0/metadata/{marker}"), marker.clone()).await,
        204
    );
    // gRPC.
    let mut c = DaprClient::connect(format!("http://{grpc}")).await.unwrap();
    for store in ["mem", "redis", "pg", "sqlite", "mysql"] {
        let mut req = tonic::Request::new(SaveStateRequest {
            store_name: store.into(),
            states: vec![StateItem {
                key: format!("g-{key}"),
                value: value.clone().into_bytes(),
                ..StateItem::default()
            }],
        });
        req.metadata_mut()
            .insert("dapr-api-token", token.parse().unwrap());
        c.save_state(req).await.unwrap();
        let mut req = tonic::Request::new(GetStateRequest {
            store_name: store.into(),
            key: format!("g-{key}"),
            ..GetStateRequest::default()
        });
        req.metadata_mut()
            .insert("dapr-api-token", token.parse().unwrap());
        c.get_state(req).await.unwrap();
    }

    mecha.terminate();
    let log = mecha.log();
    drop_pg_table(&table);

    assert!(log.contains("http request"), "debug lines are on:\n{log}");
    assert!(
        log.contains("request rejected"),
        "rejections are logged:\n{log}"
    );
    let leaks: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(&marker) || l.contains(&token))
        .collect();
    assert!(
        leaks.is_empty(),
        "the log carries a key, value or token:\n{}",
        leaks.join("\n")
    );
}
