//! The book's pasted security configuration (`security-config` blocks of
//! `docs/src/operations/security.md`) loads as written, and Mecha started with it isolates
//! the two apps as the chapter says.

use std::path::Path;

use mecha::app::{Options, start};
use mecha::config::{Config, Settings, parse_components};

fn block(readme: &str, name: &str) -> String {
    let start = format!("<!-- security-config:{name}:start -->\n```yaml\n");
    let end = format!("```\n<!-- security-config:{name}:end -->");
    let (_, rest) = readme
        .split_once(&start)
        .unwrap_or_else(|| panic!("the security chapter has no {name} block"));
    let (body, _) = rest.split_once(&end).expect("block end");
    body.to_owned()
}

#[actix_rt::test]
async fn the_pasted_configuration_loads_and_isolates_apps() {
    let readme = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/src/operations/security.md"),
    )
    .expect("the security chapter");
    let env = |k: &str| match k {
        "ORDERS_TOKEN" => Some("orders-secret".to_owned()),
        "BILLING_TOKEN" => Some("billing-secret".to_owned()),
        "METRICS_TOKEN" => Some("metrics-secret".to_owned()),
        _ => None,
    };
    let settings =
        Settings::parse_with_env(Path::new("mecha.yaml"), &block(&readme, "mecha.yaml"), &env)
            .unwrap_or_else(|e| panic!("README mecha.yaml does not load: {e:?}"));
    assert_eq!(settings.apps.len(), 2);
    assert_eq!(settings.apps[0].quota.requests_per_second, 5000);
    assert_eq!(
        settings.apps[1].quota.max_concurrent, 64,
        "billing gets the defaults"
    );
    let mut components_yaml = block(&readme, "components");
    // Point the pasted Redis at the test server when it is elsewhere.
    if let Ok(url) = std::env::var("REDIS_URL") {
        components_yaml = components_yaml.replace("localhost:6379", &url);
    }
    let (components, warnings) =
        parse_components(&[(Path::new("statestore.yaml"), &components_yaml)], &env)
            .unwrap_or_else(|e| panic!("README components do not load: {e:?}"));
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(components.len(), 2);

    let config = Config {
        settings,
        components,
        warnings,
    };
    let opts = Options {
        http_port: 0,
        grpc_port: 0,
        metrics_port: 0,
        handle_signals: false,
        ..Options::default()
    };
    let running = start(config, opts).await.expect("mecha starts");
    let base = format!("http://{}", running.http_addr);
    let client = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str, token: Option<&str>, body: &str| {
        let mut b = client
            .request(method, format!("{base}{path}"))
            .body(body.to_owned());
        if let Some(t) = token {
            b = b.header("dapr-api-token", t);
        }
        async move { b.send().await.expect("request") }
    };
    use reqwest::Method as M;
    let key = format!("readme-{:016x}", rand::random::<u64>());
    let save = format!(r#"[{{"key":"{key}","value":"o"}}]"#);
    assert_eq!(
        call(M::POST, "/v1.0/state/statestore", None, &save)
            .await
            .status(),
        401
    );
    let r = call(
        M::POST,
        "/v1.0/state/statestore",
        Some("orders-secret"),
        &save,
    )
    .await;
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap());
    // billing does not see orders' key in the shared store, nor the private store.
    let get = format!("/v1.0/state/statestore/{key}");
    assert_eq!(
        call(M::GET, &get, Some("orders-secret"), "").await.status(),
        200
    );
    assert_eq!(
        call(M::GET, &get, Some("billing-secret"), "")
            .await
            .status(),
        204
    );
    let r = call(
        M::GET,
        "/v1.0/state/orders-private/k",
        Some("billing-secret"),
        "",
    )
    .await;
    assert_eq!(r.status(), 400);
    let r = call(
        M::GET,
        "/v1.0/state/orders-private/k",
        Some("orders-secret"),
        "",
    )
    .await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        call(M::DELETE, &get, Some("orders-secret"), "")
            .await
            .status(),
        204
    );
    // Health needs no token; metrics need theirs.
    assert_eq!(call(M::GET, "/v1.0/healthz", None, "").await.status(), 204);
    let metrics = format!("http://{}/metrics", running.metrics_addr);
    assert_eq!(client.get(&metrics).send().await.unwrap().status(), 401);
    let r = client
        .get(&metrics)
        .bearer_auth("metrics-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    running.stop(true).await;
}
