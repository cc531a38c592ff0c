//! Every CPM fixture (`fixtures/cpm/manifest.json`) deposited as its depositor would, and the
//! stored object compared with what the manifest expects: placement, the complete attribute
//! set, flags, correlation ids and payload parts.

use std::collections::BTreeMap;
use std::path::PathBuf;

use reqwest::Method;
use serde_json::Value;

use crate::helpers::*;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/cpm")
}

/// Attributes as name (lower-cased) -> values.
fn attributes(o: &Value) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for a in o["attributes"]["attribute"].as_array().unwrap() {
        let values: Vec<String> =
            a["value"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
        out.insert(a["name"].as_str().unwrap().to_ascii_lowercase(), values);
    }
    out
}

#[tokio::test]
async fn every_cpm_fixture_is_stored_exactly_as_its_manifest_says() {
    let app = spawn_app().await;
    let manifest: Value = serde_json::from_slice(&std::fs::read(dir().join("manifest.json")).unwrap()).unwrap();
    let mut ids: BTreeMap<String, String> = BTreeMap::new();
    for f in manifest["fixtures"].as_array().unwrap() {
        let kind = f["kind"].as_str().unwrap();
        let root: Value =
            serde_json::from_slice(&std::fs::read(dir().join(f["rootFields"].as_str().unwrap())).unwrap()).unwrap();
        let payload = std::fs::read(dir().join(f["payload"].as_str().unwrap())).unwrap();
        let mut part_headers = vec![("Content-Type", f["payloadContentType"].as_str().unwrap().to_string())];
        let disposition = match f["payloadFilename"].as_str() {
            Some(name) => format!("form-data; name=\"attachments\"; filename=\"{name}\""),
            None => "form-data; name=\"attachments\"".to_string(),
        };
        part_headers.push(("Content-Disposition", disposition));
        let headers: Vec<(&str, &str)> = part_headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (ct, body) = form().root_fields(&root["object"]).part(&headers, &payload).finish("multipart/form-data");
        let user = if f["depositor"] == "participating-function" { "pf" } else { "alice" };
        let res = app
            .req_as(user, Method::POST, &format!("{}/objects", app.base(ALICE)))
            .header("Content-Type", ct)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let v: Value = res.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 201, "{kind}: {v}");
        let url = v["reference"]["resourceURL"].as_str().unwrap().to_string();
        let o: Value = app.get(&url).await.json().await.unwrap();
        let o = &o["object"];
        let want = &f["expected"];
        let id = last_segment(&url);
        ids.insert(kind.to_string(), id.clone());

        assert_eq!(o["path"], format!("{}/{id}", want["parentFolderPath"].as_str().unwrap()), "{kind}: placement");
        let want_attrs: BTreeMap<String, Vec<String>> = want["attributes"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                (
                    k.to_ascii_lowercase(),
                    v.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect(),
                )
            })
            .collect();
        assert_eq!(attributes(o), want_attrs, "{kind}: attributes");
        let flags: Vec<&str> =
            o["flags"]["flag"].as_array().map_or(vec![], |l| l.iter().map(|f| f.as_str().unwrap()).collect());
        let want_flags: Vec<&str> = want["flags"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
        assert_eq!(flags, want_flags, "{kind}: flags");
        assert_eq!(
            o.get("correlationId").cloned().unwrap_or(Value::Null),
            want["correlationId"],
            "{kind}: correlationId"
        );
        if !want["correlationTag"].is_null() {
            assert_eq!(o["correlationTag"], want["correlationTag"], "{kind}: correlationTag");
        }
        let parts = o["payloadPart"].as_array().cloned().unwrap_or_default();
        let want_parts = want["payloadParts"].as_array().unwrap();
        assert_eq!(parts.len(), want_parts.len(), "{kind}: parts {o}");
        for (got, w) in parts.iter().zip(want_parts) {
            for key in ["contentType", "size", "contentId", "contentDisposition", "contentLocation"] {
                if let Some(x) = w.get(key) {
                    assert_eq!(&got[key], x, "{kind}: part {key}");
                }
            }
        }
    }
    // The IMDNs went with the message they are about.
    let message = format!("{}/objects/{}", app.base(ALICE), ids["cpim-chat-image"]);
    assert_eq!(app.delete(&message).await.status(), 204);
    for imdn in ["imdn-delivered", "imdn-displayed"] {
        let res = app.get(&format!("{}/objects/{}", app.base(ALICE), ids[imdn])).await;
        assert_eq!(res.status(), 404, "{imdn} outlived its message");
    }
}

/// The same deposits without a parent folder, as a subscriber's client makes them: the
/// server's placement (docs/cpm.md) files each where the manifest's explicit paths put it
/// (call logs by remote party; the standalone media object, with no CPM attributes, in the
/// root).
#[tokio::test]
async fn placement_files_the_fixtures_where_their_manifest_puts_them() {
    let app = spawn_app().await;
    let manifest: Value = serde_json::from_slice(&std::fs::read(dir().join("manifest.json")).unwrap()).unwrap();
    for f in manifest["fixtures"].as_array().unwrap() {
        let kind = f["kind"].as_str().unwrap();
        let mut root: Value =
            serde_json::from_slice(&std::fs::read(dir().join(f["rootFields"].as_str().unwrap())).unwrap()).unwrap();
        root["object"].as_object_mut().unwrap().remove("parentFolderPath");
        let payload = std::fs::read(dir().join(f["payload"].as_str().unwrap())).unwrap();
        let ct = f["payloadContentType"].as_str().unwrap();
        let (body_ct, body) = form()
            .root_fields(&root["object"])
            .part(&[("Content-Type", ct), ("Content-Disposition", "form-data; name=\"attachments\"")], &payload)
            .finish("multipart/form-data");
        let o = app.deposit_and_get(&body_ct, body).await;
        let id = last_segment(o["resourceURL"].as_str().unwrap());
        let want = match kind {
            "call-log-geolocation" => "/RCSMessageStore/tel:+13105550000".to_string(),
            "standalone-media" => String::new(),
            _ => f["expected"]["parentFolderPath"].as_str().unwrap().to_string(),
        };
        assert_eq!(o["path"], format!("{want}/{id}"), "{kind}");
    }
}
