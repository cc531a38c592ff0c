//! bulkCreation, bulkUpdate, bulkDelete: per-item outcomes in request order, one modseq per
//! request, HTTP 200 unless every item failed, limits, and bad input.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

async fn seq_of(app: &TestApp, url: &str) -> i64 {
    let v: Value = app.get(url).await.json().await.unwrap();
    v["object"]["lastModSeq"].as_i64().unwrap()
}

fn codes(v: &Value) -> Vec<u64> {
    v["bulkResponseList"]["response"].as_array().unwrap().iter().map(|r| r["code"].as_u64().unwrap()).collect()
}

/// One payload part of a bulkCreation body: its headers and content.
type Attachment = (Vec<(&'static str, String)>, Vec<u8>);

fn attachment(content_type: Option<&str>, body: &[u8]) -> Attachment {
    let mut h = vec![("Content-Disposition", "form-data; name=\"attachments\"".to_string())];
    if let Some(t) = content_type {
        h.push(("Content-Type", t.to_string()));
    }
    (h, body.to_vec())
}

/// A bulkCreation body: root fields with `objects`, then the given payload parts.
fn bulk_body(objects: Value, parts: &[Attachment]) -> (String, Vec<u8>) {
    let json = serde_json::to_vec(&json!({"objectList": {"object": objects}})).unwrap();
    let mut m = form().part(
        &[("Content-Disposition", "form-data; name=\"root-fields\""), ("Content-Type", "application/json")],
        &json,
    );
    for (headers, body) in parts {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        m = m.part(&h, body);
    }
    m.finish("multipart/form-data")
}

async fn bulk_create(app: &TestApp, ct: &str, body: Vec<u8>) -> (u16, Value) {
    let res = app
        .req(Method::POST, &format!("{}/objects/operations/bulkCreation", app.base(ALICE)))
        .header("Content-Type", ct)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn bulk_creation_answers_each_object_in_order_in_one_transaction() {
    let app = spawn_app().await;
    let big = vec![9u8; 30_000];
    let (ct, body) = bulk_body(
        json!([
            {"parentFolderPath": "/bulk/a", "attributes": {"attribute": [{"name": "Subject", "value": ["first"]}]}},
            {"parentFolderPath": "/bulk/b"},
            {"parentFolder": format!("{}/folders/nonexistent", app.base(ALICE))},
            {"parentFolderPath": "/bulk/a", "flags": {"flag": ["bad flag"]}},
            "not an object",
        ]),
        &[
            attachment(Some("text/plain"), b"hello bulk"),
            attachment(None, b""),
            attachment(Some("image/png"), &big),
            attachment(Some("text/plain"), b"x"),
            attachment(None, b""),
        ],
    );
    let (status, v) = bulk_create(&app, &ct, body).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(codes(&v), [201, 201, 400, 400, 400]);
    let list = v["bulkResponseList"]["response"].as_array().unwrap();
    assert_eq!(list[0]["reason"], "Created");
    let first = list[0]["success"]["resourceURL"].as_str().unwrap().to_string();
    let second = list[1]["success"]["resourceURL"].as_str().unwrap().to_string();
    assert_eq!(list[0]["success"]["path"], format!("/bulk/a/{}", last_segment(&first)));
    assert_eq!(list[2]["failure"]["serviceException"]["messageId"], "SVC0002");
    assert!(list[2].get("success").is_none());

    let o1: Value = app.get(&first).await.json().await.unwrap();
    assert_eq!(o1["object"]["payloadPart"][0]["size"], 10);
    let o2: Value = app.get(&second).await.json().await.unwrap();
    assert!(o2["object"].get("payloadURL").is_none(), "the empty part means no payload");
    // One request, one modseq.
    assert_eq!(o1["object"]["lastModSeq"], o2["object"]["lastModSeq"]);
    // The refused object's payload (above the inline limit) left no blob behind.
    assert!(app.blob_files().is_empty(), "{:?}", app.blob_files());
}

#[tokio::test]
async fn bulk_creation_refusals() {
    let app = spawn_app_with(|s| s.nms.bulk_max_items = 2).await;
    // Every item failed: the failure's status, with the list.
    let (ct, body) = bulk_body(
        json!([{"parentFolder": "junk"}, {"attributes": {"attribute": [{"name": "", "value": ["x"]}]}}]),
        &[attachment(None, b""), attachment(None, b"")],
    );
    let (status, v) = bulk_create(&app, &ct, body).await;
    assert_eq!(status, 400);
    assert_eq!(codes(&v), [400, 400]);
    // Over the configured limit: 403 POL0001, nothing created.
    let (ct, body) =
        bulk_body(json!([{}, {}, {}]), &[attachment(None, b""), attachment(None, b""), attachment(None, b"")]);
    let (status, v) = bulk_create(&app, &ct, body).await;
    assert_eq!((status, message_id(&v)), (403, "POL0001"), "{v}");
    // Parts and objects must pair up.
    let (ct, body) = bulk_body(json!([{}, {}]), &[attachment(None, b"")]);
    let (status, v) = bulk_create(&app, &ct, body).await;
    assert_eq!((status, message_id(&v)), (400, "SVC0002"), "{v}");
    let (ct, body) = bulk_body(json!([{}]), &[attachment(None, b""), attachment(None, b"")]);
    let (status, v) = bulk_create(&app, &ct, body).await;
    assert_eq!((status, message_id(&v)), (400, "SVC0002"), "{v}");
    let (ct, body) = bulk_body(json!([]), &[]);
    let (status, v) = bulk_create(&app, &ct, body).await;
    assert_eq!((status, message_id(&v)), (400, "SVC0002"), "{v}");
    // Root fields that are not an objectList.
    let (ct, body) = form().root_fields(&json!({})).finish("multipart/form-data");
    let (status, v) = bulk_create(&app, &ct, body).await;
    assert_eq!((status, message_id(&v)), (400, "SVC0002"), "{v}");
    // Nothing was created by any of these.
    let (_, v) = app.post_rel("/objects/operations/search", json!({"selectionCriteria": {"maxEntries": 10}})).await;
    assert_eq!(v["objectList"]["object"], json!([]));
    // The JSON form (objects without payload) works too.
    let (status, v) = app
        .post_rel(
            "/objects/operations/bulkCreation",
            json!({"objectList": {"object": [{}, {"parentFolderPath": "/j"}]}}),
        )
        .await;
    assert_eq!((status, codes(&v)), (200, vec![201, 201]));
}

#[tokio::test]
async fn bulk_update_adds_and_removes_flags_one_modseq_unchanged_items_keep_theirs() {
    let app = spawn_app().await;
    let a = app.create_object(json!({"flags": {"flag": ["\\Seen"]}})).await;
    let b = app.create_object(json!({})).await;
    let c = app.create_object(json!({})).await;
    let (sa, sb) = (seq_of(&app, &a).await, seq_of(&app, &b).await);
    let missing = format!("{}/objects/nonexistent", app.base(ALICE));
    let foreign = format!("{}/objects/{}", app.base(BOB), last_segment(&a));
    let body = json!({"bulkUpdate": {
        "operation": "AddFlag",
        "flags": {"flag": ["\\Seen"]},
        "objects": {"objectReference": [{"resourceURL": a}, {"resourceURL": missing}, {"resourceURL": b}, {"resourceURL": foreign}, {"resourceURL": c}]},
    }});
    let (status, v) = app.post_rel("/objects/operations/bulkUpdate", body).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(codes(&v), [200, 404, 200, 400, 200]);
    let list = v["bulkResponseList"]["response"].as_array().unwrap();
    assert_eq!(list[0]["success"]["resourceURL"], a);
    assert_eq!(list[1]["failure"]["serviceException"]["messageId"], "SVC0004");
    assert_eq!(list[1]["failure"]["serviceException"]["variables"][0], missing, "the object URL in variables");
    assert_eq!(list[3]["failure"]["serviceException"]["variables"][0], foreign);
    assert_eq!(seq_of(&app, &a).await, sa, "already set: unchanged, keeps its lastModSeq");
    let (nb, nc) = (seq_of(&app, &b).await, seq_of(&app, &c).await);
    assert!(nb > sb);
    assert_eq!(nb, nc, "one request, one modseq");
    // RemoveFlag, sent as DELETE with a body.
    let res = app
        .req(Method::DELETE, &format!("{}/objects/operations/bulkUpdate", app.base(ALICE)))
        .json(&json!({"bulkUpdate": {"operation": "RemoveFlag", "flags": {"flag": ["\\seen"]}, "objects": {"objectReference": [{"resourceURL": a}, {"resourceURL": b}]}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    for u in [&a, &b] {
        let v: Value = app.get(&format!("{u}/flags")).await.json().await.unwrap();
        assert_eq!(v["flagList"]["flag"], json!([]));
    }
    // By selection criteria: flag everything in a folder.
    let d = app.create_object(json!({"parentFolderPath": "/sel"})).await;
    let e = app.create_object(json!({"parentFolderPath": "/sel/deeper"})).await;
    let v: Value =
        app.get(&format!("{}/folders/operations/pathToId?path=%2Fsel", app.base(ALICE))).await.json().await.unwrap();
    let sel = v["reference"]["resourceURL"].as_str().unwrap();
    let (status, v) = app
        .post_rel("/objects/operations/bulkUpdate", json!({"bulkUpdate": {"operation": "AddFlag", "flags": {"flag": ["\\Flagged"]}, "selectionCriteria": {"maxEntries": 100, "searchScope": {"resourceURL": sel}}}}))
        .await;
    assert_eq!((status, codes(&v)), (200, vec![200, 200]));
    for u in [&d, &e] {
        let v: Value = app.get(&format!("{u}/flags")).await.json().await.unwrap();
        assert_eq!(v["flagList"]["flag"], json!(["\\Flagged"]));
    }
    // Every item failed: the failure's status.
    let (status, v) = app
        .post_rel("/objects/operations/bulkUpdate", json!({"bulkUpdate": {"operation": "AddFlag", "flags": {"flag": ["\\Seen"]}, "objects": {"objectReference": [{"resourceURL": missing}]}}}))
        .await;
    assert_eq!((status, codes(&v)), (404, vec![404]));
}

#[tokio::test]
async fn bulk_update_bad_input() {
    let app = spawn_app_with(|s| s.nms.bulk_max_items = 2).await;
    let a = app.create_object(json!({})).await;
    let refs = json!({"objectReference": [{"resourceURL": a}]});
    let cases = [
        (
            json!({"bulkUpdate": {"operation": "Toggle", "flags": {"flag": ["\\Seen"]}, "objects": refs}}),
            400,
            "SVC0003",
        ),
        (json!({"bulkUpdate": {"flags": {"flag": ["\\Seen"]}, "objects": refs}}), 400, "SVC0003"),
        (json!({"bulkUpdate": {"operation": "AddFlag", "objects": refs}}), 400, "SVC0002"),
        (
            json!({"bulkUpdate": {"operation": "AddFlag", "flags": {"flag": ["no good"]}, "objects": refs}}),
            400,
            "SVC0002",
        ),
        (json!({"bulkUpdate": {"operation": "AddFlag", "flags": {"flag": ["\\Seen"]}}}), 400, "SVC0002"),
        (
            json!({"bulkUpdate": {"operation": "AddFlag", "flags": {"flag": ["\\Seen"]}, "objects": {"objectReference": []}}}),
            400,
            "SVC0002",
        ),
        (
            json!({"bulkUpdate": {"operation": "AddFlag", "flags": {"flag": ["\\Seen"]}, "objects": refs, "selectionCriteria": {"maxEntries": 1}}}),
            400,
            "SVC0002",
        ),
        (
            json!({"bulkUpdate": {"operation": "AddFlag", "flags": {"flag": ["\\Seen"]}, "objects": {"objectReference": [{"resourceURL": a}, {"resourceURL": a}, {"resourceURL": a}]}}}),
            403,
            "POL0001",
        ),
        (json!({"update": {}}), 400, "SVC0002"),
    ];
    for (body, status, id) in cases {
        let (got, v) = app.post_rel("/objects/operations/bulkUpdate", body.clone()).await;
        assert_eq!((got, message_id(&v)), (status, id), "{body} -> {v}");
    }
    let v: Value = app.get(&format!("{a}/flags")).await.json().await.unwrap();
    assert_eq!(v["flagList"]["flag"], json!([]), "refused requests changed nothing");

    // A selection matching more objects than the limit is refused as a whole, unless the
    // client itself asked for at most that many.
    app.create_object(json!({})).await;
    app.create_object(json!({})).await;
    let update = |sel: Value| json!({"bulkUpdate": {"operation": "AddFlag", "flags": {"flag": ["\\Seen"]}, "selectionCriteria": sel}});
    for sel in [json!({"maxEntries": 50}), json!({})] {
        let (status, v) = app.post_rel("/objects/operations/bulkUpdate", update(sel)).await;
        assert_eq!((status, message_id(&v)), (403, "POL0001"), "{v}");
    }
    let (_, v) = app
        .post_rel("/objects/operations/search", json!({"selectionCriteria": {"maxEntries": 10, "searchCriteria": {"criterion": [{"type": "Flag", "name": "\\Seen", "value": "true"}]}}}))
        .await;
    assert_eq!(v["objectList"]["object"], json!([]), "nothing was flagged");
    let (status, v) = app.post_rel("/objects/operations/bulkUpdate", update(json!({"maxEntries": 2}))).await;
    assert_eq!((status, codes(&v)), (200, vec![200, 200]));
}

#[tokio::test]
async fn bulk_delete_removes_objects_with_tombstones_and_blobs() {
    let app = spawn_app().await;
    let (ct, body) = form()
        .root_fields(&json!({"parentFolderPath": "/del"}))
        .part(
            &[("Content-Disposition", "form-data; name=\"attachments\""), ("Content-Type", "image/png")],
            &vec![4u8; 20_000],
        )
        .finish("multipart/form-data");
    let v: Value = app.deposit(&ct, body).await.json().await.unwrap();
    let with_blob = v["reference"]["resourceURL"].as_str().unwrap().to_string();
    let plain = app.create_object(json!({"correlationId": "c-9"})).await;
    let keep = app.create_object(json!({})).await;
    let missing = format!("{}/objects/nonexistent", app.base(ALICE));
    let b = app.nms.find_box("base", ALICE).await.unwrap().unwrap();
    assert_eq!(app.blob_files().len(), 1);
    // DELETE with a body (the usual form).
    let res = app
        .req(Method::DELETE, &format!("{}/objects/operations/bulkDelete", app.base(ALICE)))
        .json(&json!({"bulkDelete": {"objects": {"objectReference": [{"resourceURL": with_blob}, {"resourceURL": missing}, {"resourceURL": plain}]}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(codes(&v), [200, 404, 200]);
    for u in [&with_blob, &plain] {
        assert_eq!(app.get(u).await.status(), 404);
    }
    assert_eq!(app.get(&keep).await.status(), 200);
    assert!(app.blob_files().is_empty(), "the blob went with its last object");
    let t = app.nms.store().tombstones_since(&b, b.modseq).await.unwrap();
    assert_eq!(t.len(), 2);
    assert_eq!(t[0].last_mod_seq, t[1].last_mod_seq, "one request, one modseq");
    assert!(t.iter().any(|x| x.correlation_id.as_deref() == Some("c-9")));
    // POST form, by selection criteria.
    app.create_object(json!({"parentFolderPath": "/gone", "flags": {"flag": ["\\Deleted"]}})).await;
    app.create_object(json!({"parentFolderPath": "/gone", "flags": {"flag": ["\\Deleted"]}})).await;
    let (status, v) = app
        .post_rel("/objects/operations/bulkDelete", json!({"bulkDelete": {"selectionCriteria": {"maxEntries": 50, "searchCriteria": {"criterion": [{"type": "Flag", "name": "\\Deleted", "value": "true"}]}}}}))
        .await;
    assert_eq!((status, codes(&v)), (200, vec![200, 200]));
    // All failed; and bad input.
    let (status, v) = app
        .post_rel(
            "/objects/operations/bulkDelete",
            json!({"bulkDelete": {"objects": {"objectReference": [{"resourceURL": missing}]}}}),
        )
        .await;
    assert_eq!((status, codes(&v)), (404, vec![404]));
    for bad in [
        json!({"bulkDelete": {}}),
        json!({"bulkDelete": {"selectionCriteria": {"maxEntries": 5, "searchCriteria": {"criterion": [{"type": "VanishedObjects", "value": ""}]}}}}),
    ] {
        let (status, v) = app.post_rel("/objects/operations/bulkDelete", bad).await;
        assert_eq!((status, message_id(&v)), (400, "SVC0002"), "{v}");
    }
    assert_eq!(app.get(&keep).await.status(), 200);
}
