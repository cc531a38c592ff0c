//! `GET /openapi.json` and `GET /docs`: the document covers exactly the routes the server
//! serves (both lists taken from the code: the operation table and the service routes the
//! route table registers), every documented route is answered by its handler, and the page
//! renders the document in a real browser.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;
use cpm_nms::api::openapi::SERVICE_ROUTES;
use cpm_nms::auth::Operation;

async fn document(app: &TestApp) -> Value {
    let res = app.client.get(format!("{}/openapi.json", app.url)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    res.json().await.unwrap()
}

/// (method, path) of every route the server serves, from the code.
fn served() -> BTreeSet<(String, String)> {
    let mut out: BTreeSet<(String, String)> =
        Operation::ALL.iter().map(|op| (op.method().to_ascii_lowercase(), op.pattern())).collect();
    for (path, ..) in SERVICE_ROUTES {
        out.insert(("get".into(), path.to_string()));
    }
    out
}

/// (method, path) of every operation the document describes.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "put", "post", "delete", "patch", "head", "options", "trace"].contains(&method.as_str()) {
                out.insert((method.clone(), path.clone()));
            }
        }
    }
    out
}

/// A concrete URL of a route pattern.
fn concrete(app: &TestApp, pattern: &str) -> String {
    let path = pattern
        .replace("{store}", "base")
        .replace("{box}", &enc(ALICE))
        .replace("{userId}", &enc(ALICE))
        .replace("{flagName}", "%5CSeen");
    let path = cpm_nms::api::openapi::path_parameters(pattern)
        .iter()
        .fold(path, |p, name| p.replace(&format!("{{{name}}}"), "x1"));
    format!("{}{path}", app.url)
}

#[tokio::test]
async fn the_document_lists_exactly_the_served_routes() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let served = served();
    let documented = documented(&doc);
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(undocumented.is_empty(), "served but not documented: {undocumented:?}");
    assert!(unserved.is_empty(), "documented but not served: {unserved:?}");
    // Each operation is there under its own name, with its path parameters.
    for op in Operation::ALL {
        let o = &doc["paths"][op.pattern()][op.method().to_ascii_lowercase()];
        assert_eq!(o["operationId"], op.name());
        let params: Vec<&str> = o["parameters"]
            .as_array()
            .map(|a| a.iter().filter(|p| p["in"] == "path").map(|p| p["name"].as_str().unwrap()).collect())
            .unwrap_or_default();
        assert_eq!(params, cpm_nms::api::openapi::path_parameters(&op.pattern()), "{}", op.name());
    }
}

#[tokio::test]
async fn every_documented_route_reaches_its_handler() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let unknown = app.client.get(format!("{}/nms/v1/base/nothing/here/at/all", app.url)).send().await.unwrap();
    assert_eq!(unknown.status(), 404);
    for (method, path) in documented(&doc) {
        let url = concrete(&app, &path);
        let m = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
        let res = app.client.request(m.clone(), &url).json(&json!({})).send().await.unwrap();
        let status = res.status().as_u16();
        let credentials_optional = Operation::ALL
            .iter()
            .any(|op| op.pattern() == path && op.method() == m.as_str() && op.credentials_optional());
        if path.starts_with("/nms/") || (path.starts_with("/notificationchannel/") && !credentials_optional) {
            // Routed, and refused for want of credentials before anything else.
            assert_eq!(status, 401, "{method} {path}");
        } else {
            assert!(![404, 405].contains(&status), "{method} {path}: {status}");
        }
    }
}

#[tokio::test]
async fn the_document_describes_bodies_errors_and_credentials() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["basic"]["scheme"], "basic");
    assert_eq!(schemes["digest"]["scheme"], "digest");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    // The OMA error body, and every operation answering it for 4xx and 5xx.
    let error = &doc["components"]["schemas"]["RequestErrorOut"];
    assert!(error["properties"]["requestError"].is_object(), "{error}");
    for op in Operation::ALL {
        let responses = &doc["paths"][op.pattern()][op.method().to_ascii_lowercase()]["responses"];
        assert!(responses["4XX"].is_object() && responses["5XX"].is_object(), "{}", op.name());
    }
    // A flag's `Empty` 404 is told apart from a `requestError` 404: `empty` is required, and
    // null (else every error body would match both alternatives of the answer's oneOf).
    let empty = &doc["components"]["schemas"]["EmptyEnvelope"];
    assert_eq!(empty["required"], json!(["empty"]));
    assert_eq!(empty["properties"]["empty"]["type"], "null");
    let flag = &doc["paths"][Operation::ObjectFlagGet.pattern()]["get"]["responses"]["4XX"];
    assert_eq!(flag["content"]["application/json"]["schema"]["oneOf"].as_array().unwrap().len(), 2);
    // A deposit's examples are the fixtures' root fields.
    let create = &doc["paths"][Operation::ObjectCreate.pattern()]["post"]["requestBody"]["content"];
    let sms: Value = serde_json::from_str(include_str!("../../fixtures/walkthrough/sms-root-fields.json")).unwrap();
    assert_eq!(create["application/json"]["examples"]["sms"]["value"], sms);
    assert!(create["multipart/form-data"].is_object());
    // Documents and errors may be XML as well.
    assert!(create["application/xml"].is_object());
    let get = &doc["paths"][Operation::ObjectGet.pattern()]["get"]["responses"];
    assert!(
        get["200"]["content"]["application/xml"].is_object() && get["4XX"]["content"]["application/xml"].is_object()
    );
    // Renewing a channel's lifetime may go without credentials; nothing else may.
    let renew = &doc["paths"][Operation::ChannelLifetimePut.pattern()]["put"]["security"];
    assert!(renew.as_array().unwrap().iter().any(|r| r == &json!({})), "{renew}");
    assert!(doc["paths"][Operation::ObjectGet.pattern()]["get"]["security"].is_null());
    assert_eq!(doc["security"].as_array().unwrap().len(), 3);
}

/// The first Chromium of Debian's packages on this machine.
fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| std::process::Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()))
}

#[tokio::test]
async fn the_docs_page_renders_the_operations_in_a_browser() {
    let Some(browser) = chromium() else {
        eprintln!("SKIPPED: no chromium on this machine (apt-get install chromium); .ci/run installs it");
        return;
    };
    let app = spawn_app().await;
    let res = app.client.get(format!("{}/docs", app.url)).send().await.unwrap();
    assert_eq!(res.status(), 308);
    assert_eq!(res.headers()["location"], "/docs/");
    let profile = tempfile::tempdir().unwrap();
    let url = format!("{}/docs/", app.url);
    let out = tokio::process::Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        // Time the page's scripts may take, virtually: the DOM is dumped once they settled.
        .args(["--virtual-time-budget=30000", "--dump-dom", &url])
        .output()
        .await
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(dom.contains("swagger-ui"), "not the Swagger UI page: {dom}");
    // The document was fetched and rendered: the object operations are listed.
    for op in [Operation::ObjectCreate, Operation::ObjectGet, Operation::ObjectSearch, Operation::ObjectPayloadGet] {
        assert!(dom.contains(&format!("data-path=\"{}\"", op.pattern())), "{} not listed", op.name());
    }
    assert!(dom.contains("opblock-summary-method"), "no operation rendered");
    assert!(dom.contains("Deposit an object"), "the object operations' summaries are missing");
}
