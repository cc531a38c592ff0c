//! Object creation, retrieval and deletion (NMS 6.1, 6.2).

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

fn keys(v: &Value) -> Vec<String> {
    v.as_object().expect("object").keys().cloned().collect()
}

#[tokio::test]
async fn json_deposit_answers_201_location_and_reference() {
    let app = spawn_app().await;
    let res = app
        .post_json(
            &format!("{}/objects", app.base(ALICE)),
            json!({"object": {"parentFolderPath": "/main/inbox",
                "attributes": {"attribute": [{"name": "Message-Context", "value": ["chat-message"]}]},
                "flags": {"flag": ["\\Seen", "\\Flagged"]}}}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let location = res.headers().get("location").expect("Location").to_str().expect("str").to_string();
    let body: Value = res.json().await.expect("json");
    assert_eq!(keys(&body), ["reference"]);
    let r = &body["reference"];
    assert_eq!(r["resourceURL"], location);
    assert!(location.starts_with(&format!("{}/nms/v1/base/tel%3A%2B12125551212/objects/", app.url)));
    let id = last_segment(&location);
    assert_eq!(r["path"], format!("/main/inbox/{id}"));
    assert!(id.chars().all(|c| c.is_ascii_alphanumeric()) && id != "operations");
}

/// NMS 6.1.5.1: a multipart/mixed payload becomes one payload part per inner part, and the
/// object reads back in the shape of NMS 6.2.3.1.
#[tokio::test]
async fn multipart_mixed_deposit_reads_back_in_the_spec_shape() {
    let app = spawn_app().await;
    let root = app.root().await;
    let folder = app.create_folder(json!({"parentFolder": root, "name": "fld123"})).await;
    let (inner_type, inner) = nested(
        "multipart/mixed",
        "--=-sep-=--",
        &[
            (
                &[("Content-Type", "text/plain"), ("Content-Disposition", "attachment; filename=\"body.txt\"")],
                b"See attached photo",
            ),
            (
                &[("Content-Type", "image/gif"), ("Content-Disposition", "attachment; filename=\"picture.gif\"")],
                b"GIF89a...binary image data...",
            ),
        ],
    );
    let (ct, body) = form()
        .root_fields(&json!({"parentFolder": folder, "attributes": {"attribute": [
            {"name": "Message-Context", "value": ["multimedia-message"]},
            {"name": "Direction", "value": ["In"]},
            {"name": "From", "value": ["tel:+19585550100"]},
            {"name": "To", "value": ["tel:+19585550210", "tel:+19585550320"]},
            {"name": "Date", "value": ["2013-11-12T08:30:10Z"]},
            {"name": "Subject", "value": ["Weekend Trip to Seattle"]}]},
            "flags": {"flag": ["\\Seen", "\\Answered"]}}))
        .part(&[("Content-Type", &inner_type), ("Content-Disposition", "form-data; name=\"attachments\"")], &inner)
        .finish("multipart/form-data");
    let o = app.deposit_and_get(&ct, body).await;
    assert_eq!(
        keys(&o),
        ["parentFolder", "attributes", "flags", "resourceURL", "path", "payloadURL", "payloadPart", "lastModSeq"]
    );
    assert_eq!(o["parentFolder"], folder);
    let attrs = o["attributes"]["attribute"].as_array().expect("array");
    let to = attrs.iter().find(|a| a["name"] == "To").expect("To");
    assert_eq!(to["value"], json!(["tel:+19585550210", "tel:+19585550320"]));
    let date = attrs.iter().find(|a| a["name"] == "Date").expect("Date");
    assert_eq!(date["value"], json!(["2013-11-12T08:30:10Z"]), "depositor's Date wins");
    let ctype = attrs.iter().find(|a| a["name"] == "Content-Type").expect("Content-Type");
    assert_eq!(ctype["value"], json!(["multipart/mixed"]), "boundary is not kept");
    assert_eq!(o["flags"]["flag"], json!(["\\Seen", "\\Answered"]));
    let id = last_segment(o["resourceURL"].as_str().expect("url"));
    assert_eq!(o["path"], format!("/fld123/{id}"));
    assert_eq!(o["payloadURL"], format!("{}/payload", o["resourceURL"].as_str().expect("url")));
    let parts = o["payloadPart"].as_array().expect("parts");
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0]["contentType"], "text/plain");
    assert_eq!(parts[0]["size"], 18);
    assert_eq!(parts[0]["contentDisposition"], "attachment; filename=\"body.txt\"");
    assert_eq!(parts[1]["contentType"], "image/gif");
    assert!(parts[1]["href"].as_str().expect("href").starts_with("http://"));
    assert!(o["lastModSeq"].is_u64());
}

/// NMS 6.1.5.5 / 6.2.3.2: multipart/related keeps `start` in the Content-Type attribute and
/// each part's Content-ID without angle brackets.
#[tokio::test]
async fn multipart_related_keeps_start_and_content_ids() {
    let app = spawn_app().await;
    let (inner_type, inner) = nested(
        "multipart/related; start=\"28186490\"",
        "rel-sep",
        &[
            (&[("Content-Type", "text/plain; charset=UTF-8"), ("Content-ID", "<28184720>")], b"See attached photo."),
            (&[("Content-Type", "application/smil; charset=US-ASCII"), ("Content-ID", "<28186490>")], b"<smil></smil>"),
            (
                &[
                    ("Content-Type", "image/jpeg"),
                    ("Content-ID", "<28186480>"),
                    ("Content-Transfer-Encoding", "binary"),
                ],
                &[0xff, 0xd8, 0xff, 0x00, 0x01],
            ),
        ],
    );
    let (ct, body) = form()
        .root_fields(&json!({"attributes": {"attribute": []}, "flags": {"flag": []}}))
        .part(&[("Content-Type", &inner_type), ("Content-Disposition", "form-data; name=\"attachments\"")], &inner)
        .finish("multipart/form-data");
    let o = app.deposit_and_get(&ct, body).await;
    let attrs = o["attributes"]["attribute"].as_array().expect("array");
    let ctype = attrs.iter().find(|a| a["name"] == "Content-Type").expect("Content-Type");
    assert_eq!(ctype["value"], json!(["multipart/related; start=\"28186490\""]));
    let parts = o["payloadPart"].as_array().expect("parts");
    let ids: Vec<&str> = parts.iter().map(|p| p["contentId"].as_str().expect("cid")).collect();
    assert_eq!(ids, ["28184720", "28186490", "28186480"]);
    assert_eq!(parts[2]["contentEncoding"], "binary");
    assert_eq!(parts[2]["size"], 5);
}

/// NMS 6.1.5.6 and the real-client SMS layout: a single leaf part named `attachments`.
#[tokio::test]
async fn leaf_payload_part_becomes_one_part() {
    let app = spawn_app().await;
    let (ct, body) = form()
        .root_fields(&json!({"attributes": {"attribute": [{"name": "Message-Context", "value": ["pager-message"]}]}}))
        .part(
            &[
                ("Content-Disposition", "form-data;name=\"attachments\";filename=\"sms.txt\""),
                ("Content-Type", "text/plain; charset=utf-8"),
            ],
            b"The quick brown fox rushed to Montreal.",
        )
        .finish("multipart/form-data");
    let o = app.deposit_and_get(&ct, body).await;
    let parts = o["payloadPart"].as_array().expect("parts");
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0]["contentType"], "text/plain; charset=utf-8");
    assert_eq!(parts[0]["size"], 39);
    // A CPM object without a parent is placed (docs/cpm.md): with no party to file it by, in
    // the user's area.
    let id = last_segment(o["resourceURL"].as_str().expect("url"));
    assert_eq!(o["path"], format!("/RCSMessageStore/{id}"));
}

/// A `message` part name is accepted as well as `attachments`, and a JSON-only object has no
/// payloadURL or payloadPart.
#[tokio::test]
async fn message_part_name_and_payloadless_objects() {
    let app = spawn_app().await;
    let (ct, body) = form()
        .root_fields(&json!({"attributes": {"attribute": []}}))
        .part(&[("Content-Disposition", "form-data; name=\"message\""), ("Content-Type", "text/plain")], b"hi")
        .finish("multipart/form-data");
    let o = app.deposit_and_get(&ct, body).await;
    assert_eq!(o["payloadPart"].as_array().map(Vec::len), Some(1));
    let url = app
        .create_object(json!({"attributes": {"attribute": []}, "correlationId": "c-1", "correlationTag": "t-1"}))
        .await;
    let o: Value = app.get(&url).await.json().await.expect("json");
    let o = &o["object"];
    assert!(o.get("payloadURL").is_none() && o.get("payloadPart").is_none());
    assert_eq!(o["correlationId"], "c-1");
    assert_eq!(o["correlationTag"], "t-1");
    assert_eq!(o["flags"]["flag"], json!([]));
}

#[tokio::test]
async fn parent_folder_path_creates_missing_ancestors() {
    let app = spawn_app().await;
    let url = app.create_object(json!({"parentFolderPath": "/a/b/c", "attributes": {"attribute": []}})).await;
    for p in ["/a", "/a/b", "/a/b/c"] {
        let res = app.get(&format!("{}/folders/operations/pathToId?path={}", app.base(ALICE), enc(p))).await;
        assert_eq!(res.status(), 200, "{p}");
    }
    let o: Value = app.get(&url).await.json().await.expect("json");
    assert!(o["object"]["path"].as_str().expect("path").starts_with("/a/b/c/"));
}

#[tokio::test]
async fn delete_object_is_204_then_404() {
    let app = spawn_app().await;
    let url = app.create_object(json!({"attributes": {"attribute": []}})).await;
    assert_eq!(app.delete(&url).await.status(), 204);
    assert_error(app.get(&url).await, 404, "SVC0004").await;
    assert_error(app.delete(&url).await, 404, "SVC0004").await;
}

#[tokio::test]
async fn ids_are_unique_and_never_reused() {
    let app = spawn_app().await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..20 {
        let url = app.create_object(json!({"attributes": {"attribute": []}})).await;
        assert!(seen.insert(last_segment(&url)));
        app.delete(&url).await;
    }
}

// ---------------- bad input ----------------

#[tokio::test]
async fn malformed_json_is_400_svc0002() {
    let app = spawn_app().await;
    let res = app
        .req(Method::POST, &format!("{}/objects", app.base(ALICE)))
        .header("Content-Type", "application/json")
        .body("{\"object\": {")
        .send()
        .await
        .expect("send");
    assert_error(res, 400, "SVC0002").await;
    let (ct, body) = form()
        .part(
            &[("Content-Disposition", "form-data; name=\"root-fields\""), ("Content-Type", "application/json")],
            b"{not json",
        )
        .finish("multipart/form-data");
    assert_error(app.deposit(&ct, body).await, 400, "SVC0002").await;
    // Wrong types inside a well-formed document.
    let res = app.post_json(&format!("{}/objects", app.base(ALICE)), json!({"object": {"flags": {"flag": "x"}}})).await;
    assert_error(res, 400, "SVC0002").await;
}

#[tokio::test]
async fn missing_root_fields_is_400_svc0002() {
    let app = spawn_app().await;
    let (ct, body) = form()
        .part(&[("Content-Disposition", "form-data; name=\"attachments\""), ("Content-Type", "text/plain")], b"hello")
        .finish("multipart/form-data");
    let exc = assert_error(app.deposit(&ct, body).await, 400, "SVC0002").await;
    assert_eq!(exc["variables"], json!(["root-fields"]));
    let (ct, body) = form().finish("multipart/form-data");
    assert_error(app.deposit(&ct, body).await, 400, "SVC0002").await;
}

#[tokio::test]
async fn unknown_or_foreign_parent_is_400_svc0002() {
    let app = spawn_app().await;
    let base = app.base(ALICE);
    let res = app
        .post_json(
            &format!("{base}/objects"),
            json!({"object": {"parentFolder": format!("{base}/folders/nope"), "attributes": {"attribute": []}}}),
        )
        .await;
    assert_error(res, 400, "SVC0002").await;
    // A folder URL of another box is refused too, even if that folder exists.
    let bob_root: Value = app
        .req_as("bob", Method::GET, &format!("{}/folders/operations/pathToId", app.base(BOB)))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let bob_root = bob_root["reference"]["resourceURL"].as_str().expect("url").to_string();
    let res = app
        .post_json(
            &format!("{base}/objects"),
            json!({"object": {"parentFolder": bob_root, "attributes": {"attribute": []}}}),
        )
        .await;
    assert_error(res, 400, "SVC0002").await;
    let res = app
        .post_json(
            &format!("{base}/objects"),
            json!({"object": {"parentFolder": "not a url", "attributes": {"attribute": []}}}),
        )
        .await;
    assert_error(res, 400, "SVC0002").await;
    let res = app
        .post_json(
            &format!("{base}/objects"),
            json!({"object": {"parentFolder": app.root().await, "parentFolderPath": "/x"}}),
        )
        .await;
    assert_error(res, 400, "SVC0002").await;
    let res = app.post_json(&format!("{base}/objects"), json!({"object": {"parentFolderPath": "/a//b"}})).await;
    assert_error(res, 400, "SVC0002").await;
}

#[tokio::test]
async fn unsupported_media_type_is_415() {
    let app = spawn_app().await;
    let res = app
        .req(Method::POST, &format!("{}/objects", app.base(ALICE)))
        .header("Content-Type", "text/plain")
        .body("hello")
        .send()
        .await
        .expect("send");
    assert_error(res, 415, "POL0011").await;
    // A loosely labelled JSON part is still read.
    let (ct, body) = form()
        .part(
            &[("Content-Disposition", "form-data; name=\"root-fields\""), ("Content-Type", "application/octet-stream")],
            br#"{"object":{"parentFolderPath":"/x"}}"#,
        )
        .finish("multipart/form-data");
    assert_eq!(app.deposit(&ct, body).await.status(), 201);
}

#[tokio::test]
async fn truncated_multipart_is_400_and_leaves_nothing() {
    let app = spawn_app().await;
    let big = vec![7u8; 100_000];
    let (ct, body) = form()
        .root_fields(&json!({"attributes": {"attribute": []}}))
        .part(
            &[("Content-Disposition", "form-data; name=\"attachments\""), ("Content-Type", "application/octet-stream")],
            &big,
        )
        .finish("multipart/form-data");
    let cut = body[..body.len() - 30].to_vec();
    assert_error(app.deposit(&ct, cut).await, 400, "SVC0002").await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(app.blob_files().is_empty(), "left behind: {:?}", app.blob_files());
    let list: Value = app.get(&format!("{}?listFilter=Objects", app.root().await)).await.json().await.expect("json");
    assert_eq!(list["folder"]["objects"]["objectReference"], json!([]));
}

#[tokio::test]
async fn extra_parts_are_refused_and_clean_up() {
    let app = spawn_app().await;
    let big = vec![1u8; 50_000];
    let (ct, body) = form()
        .root_fields(&json!({"attributes": {"attribute": []}}))
        .part(&[("Content-Disposition", "form-data; name=\"attachments\""), ("Content-Type", "image/png")], &big)
        .part(&[("Content-Disposition", "form-data; name=\"attachments\""), ("Content-Type", "image/png")], b"x")
        .finish("multipart/form-data");
    assert_error(app.deposit(&ct, body).await, 400, "SVC0002").await;
    assert!(app.blob_files().is_empty(), "a failed request leaves no blob: {:?}", app.blob_files());
}

#[tokio::test]
async fn oversize_body_is_413() {
    let app = spawn_app_with(|s| s.limits.max_body_bytes = 10_000).await;
    let big = vec![1u8; 50_000];
    let (ct, body) = form()
        .root_fields(&json!({"attributes": {"attribute": []}}))
        .part(&[("Content-Disposition", "form-data; name=\"attachments\""), ("Content-Type", "image/png")], &big)
        .finish("multipart/form-data");
    assert_error(app.deposit(&ct, body).await, 413, "POL0001").await;
    // Without Content-Length (chunked), the limit trips while streaming.
    let (ct, body) = form()
        .root_fields(&json!({"attributes": {"attribute": []}}))
        .part(&[("Content-Disposition", "form-data; name=\"attachments\""), ("Content-Type", "image/png")], &big)
        .finish("multipart/form-data");
    let stream =
        futures_util::stream::iter(body.chunks(4096).map(|c| Ok::<_, std::io::Error>(c.to_vec())).collect::<Vec<_>>());
    let res = app
        .req(Method::POST, &format!("{}/objects", app.base(ALICE)))
        .header("Content-Type", ct)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .expect("send");
    assert_error(res, 413, "POL0001").await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(app.blob_files().is_empty(), "{:?}", app.blob_files());
    // A JSON body over the JSON limit.
    let app = spawn_app_with(|s| s.limits.max_json_bytes = 100).await;
    let res = app
        .post_json(
            &format!("{}/objects", app.base(ALICE)),
            json!({"object": {"attributes": {"attribute": [{"name": "Subject", "value": ["x".repeat(500)]}]}}}),
        )
        .await;
    assert_error(res, 413, "POL0001").await;
}

#[tokio::test]
async fn unknown_ids_are_404_svc0004() {
    let app = spawn_app().await;
    let base = app.base(ALICE);
    for url in [
        format!("{base}/objects/nope"),
        format!("{base}/objects/nope/flags"),
        format!("{base}/objects/nope/payload"),
        format!("{base}/objects/nope/payloadParts/1"),
        format!("{base}/folders/nope"),
        format!("{base}/folders/nope/folderName"),
    ] {
        assert_error(app.get(&url).await, 404, "SVC0004").await;
    }
    // Unknown box, store and path.
    let res =
        app.req_as("pf", Method::GET, &format!("{}/objects/x", app.base("tel:+19999"))).send().await.expect("send");
    assert_error(res, 404, "SVC0004").await;
    assert_error(app.get(&format!("{}/nms/v1/other/{}/objects/x", app.url, enc(ALICE))).await, 404, "SVC0004").await;
    assert_error(app.get(&format!("{}/nothing/here", app.url)).await, 404, "SVC0004").await;
}

#[tokio::test]
async fn unsupported_methods_are_405_with_allow() {
    let app = spawn_app().await;
    let url = app.create_object(json!({"attributes": {"attribute": []}})).await;
    let base = app.base(ALICE);
    for (method, u, allow) in [
        (Method::PUT, url.clone(), "GET, DELETE"),
        (Method::POST, url.clone(), "GET, DELETE"),
        (Method::GET, format!("{base}/objects"), "POST"),
        (Method::DELETE, format!("{url}/flags"), "GET, PUT"),
        (Method::POST, format!("{url}/flags/%5CSeen"), "GET, PUT, DELETE"),
        (Method::PUT, format!("{url}/payload"), "GET"),
        (Method::DELETE, format!("{base}/objects/operations/pathToId"), "GET, POST"),
        (Method::PUT, format!("{base}/folders"), "POST"),
        (Method::POST, format!("{base}/folders/x/folderName"), "GET, PUT"),
    ] {
        let res = app.req(method.clone(), &u).send().await.expect("send");
        assert_eq!(res.status(), 405, "{method} {u}");
        assert_eq!(res.headers().get("allow").expect("Allow").to_str().expect("str"), allow);
        assert_error(res, 405, "SVC0001").await;
    }
}

#[tokio::test]
async fn attribute_names_fold_ascii_case_only_and_never_collide() {
    let app = spawn_app().await;
    // "Subject"/"SUBJECT" are one attribute; "Ä"/"ä" (and K/Kelvin sign) differ only outside
    // ASCII and stay two attributes, never a storage conflict.
    let url = app
        .create_object(json!({"attributes": {"attribute": [
            {"name": "Subject", "value": ["one"]},
            {"name": "SUBJECT", "value": ["two"]},
            {"name": "Ä", "value": ["upper"]},
            {"name": "ä", "value": ["lower"]},
            {"name": "K", "value": ["k"]},
            {"name": "\u{212A}", "value": ["kelvin"]},
        ]}}))
        .await;
    let o: Value = app.get(&url).await.json().await.unwrap();
    let attrs = o["object"]["attributes"]["attribute"].as_array().unwrap();
    let get = |n: &str| attrs.iter().find(|a| a["name"] == n).map(|a| a["value"].clone());
    assert_eq!(get("Subject"), Some(json!(["one", "two"])));
    assert_eq!(get("Ä"), Some(json!(["upper"])));
    assert_eq!(get("ä"), Some(json!(["lower"])));
    assert_eq!(get("K"), Some(json!(["k"])));
    assert_eq!(get("\u{212A}"), Some(json!(["kelvin"])));
    // The same on folders.
    let root = app.root().await;
    let res = app
        .post_json(
            &format!("{}/folders", app.base(ALICE)),
            json!({"folder": {"parentFolder": root, "name": "f", "attributes": {"attribute": [
                {"name": "Ä", "value": ["a"]}, {"name": "ä", "value": ["b"]}]}}}),
        )
        .await;
    assert_eq!(res.status(), 201);
}
