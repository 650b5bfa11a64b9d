//! `mecha --log-format json`: every log line is a JSON object, and the lines of a state
//! request sent with a W3C `traceparent` (HTTP header or gRPC metadata) carry its trace id
//! together with the app, store and operation; an invalid `traceparent` is ignored.

use crate::support;

use mecha::gateway::grpc::proto::runtime::GetStateRequest;
use mecha::gateway::grpc::proto::runtime::dapr_client::DaprClient;
use serde_json::Value;
use support::binary::Process;

/// Every field of a line's spans (the current span and its parents), merged.
fn span_fields(line: &Value) -> serde_json::Map<String, Value> {
    let mut fields = serde_json::Map::new();
    for span in line["spans"].as_array().into_iter().flatten() {
        if let Some(o) = span.as_object() {
            fields.extend(o.clone());
        }
    }
    fields
}

#[actix_rt::test]
async fn json_logs_carry_the_trace_id_app_store_and_operation() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mem.yaml"),
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: mem\nspec:\n  type: state.in-memory\n  version: v1\n",
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
            "--log-format",
            "json",
        ],
        &[],
    );
    let (http, grpc) = (mecha.http.clone(), mecha.grpc.clone());

    let http_trace = format!("{:032x}", rand::random::<u128>() | 1);
    let grpc_trace = format!("{:032x}", rand::random::<u128>() | 1);
    let bad_trace = format!("{:032X}", rand::random::<u128>() | 0xA);
    let client = reqwest::Client::new();
    let resp = client
        .post(format!("http://{http}/v1.0/state/mem"))
        .header(
            "traceparent",
            format!("00-{http_trace}-00f067aa0ba902b7-01"),
        )
        .body(r#"[{"key":"k","value":"v"}]"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    // Upper-case hex is not a valid traceparent: ignored, and the request still succeeds.
    let resp = client
        .get(format!("http://{http}/v1.0/state/mem/k"))
        .header("traceparent", format!("00-{bad_trace}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut c = DaprClient::connect(format!("http://{grpc}")).await.unwrap();
    let mut req = tonic::Request::new(GetStateRequest {
        store_name: "mem".into(),
        key: "k".into(),
        ..GetStateRequest::default()
    });
    req.metadata_mut().insert(
        "traceparent",
        format!("00-{grpc_trace}-b7ad6b7169203331-00")
            .parse()
            .unwrap(),
    );
    let got = c.get_state(req).await.unwrap().into_inner();
    assert_eq!(got.data, br#""v""#.to_vec());

    mecha.terminate();
    let lines = mecha.lines();
    let all = lines.join("\n");
    let parsed: Vec<Value> = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(parsed.len() > 3, "{all}");

    let with_trace = |trace: &str| -> Vec<serde_json::Map<String, Value>> {
        parsed
            .iter()
            .map(span_fields)
            .filter(|f| f.get("trace_id").and_then(Value::as_str) == Some(trace))
            .collect()
    };
    for (trace, protocol, operation, door_line) in [
        (&http_trace, "http", "set", "http request"),
        (&grpc_trace, "grpc", "get", "grpc request"),
    ] {
        let lines = with_trace(trace);
        assert!(
            lines.iter().any(|f| f["protocol"] == protocol
                && f.get("app").and_then(Value::as_str) == Some("default")
                && f.get("store").and_then(Value::as_str) == Some("mem")
                && f.get("operation").and_then(Value::as_str) == Some(operation)),
            "a {protocol} line with trace id, app, store and operation:\n{all}"
        );
        // The door's own line of the request carries the trace id too.
        assert!(
            parsed.iter().any(|l| l["fields"]["message"] == door_line
                && span_fields(l).get("trace_id").and_then(Value::as_str) == Some(trace)),
            "the {door_line:?} line carries the trace id:\n{all}"
        );
    }
    // The invalid traceparent left no trace id anywhere; the request was still logged.
    assert!(
        !all.to_lowercase().contains(&bad_trace.to_lowercase()),
        "{all}"
    );
    assert!(
        parsed.iter().any(|l| {
            let f = span_fields(l);
            f.get("operation").and_then(Value::as_str) == Some("get")
                && f.get("protocol").and_then(Value::as_str) == Some("http")
                && !f.contains_key("trace_id")
        }),
        "the request with an invalid traceparent is logged without a trace id:\n{all}"
    );
}
