//! `GET /openapi.json`: the document covers exactly the routes the server serves (both lists
//! taken from the code: the operation table and the service routes the route table
//! registers), and every documented route is answered by its handler.

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
    // A deposit's examples are the fixtures' root fields.
    let create = &doc["paths"][Operation::ObjectCreate.pattern()]["post"]["requestBody"]["content"];
    let sms: Value = serde_json::from_str(include_str!("../../fixtures/walkthrough/sms-root-fields.json")).unwrap();
    assert_eq!(create["application/json"]["examples"]["sms"]["value"], sms);
    assert!(create["multipart/form-data"].is_object());
    // Renewing a channel's lifetime may go without credentials; nothing else may.
    let renew = &doc["paths"][Operation::ChannelLifetimePut.pattern()]["put"]["security"];
    assert!(renew.as_array().unwrap().iter().any(|r| r == &json!({})), "{renew}");
    assert!(doc["paths"][Operation::ObjectGet.pattern()]["get"]["security"].is_null());
    assert_eq!(doc["security"].as_array().unwrap().len(), 3);
}
