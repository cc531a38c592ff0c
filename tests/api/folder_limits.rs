//! Folder names and the shape of folder paths: one name check wherever a folder comes into
//! being, and `limits.max_folder_depth` / `limits.max_folder_path_bytes` wherever a path is
//! made (create, a deposit's `parentFolderPath`, bulk creation, rename, move, copy).

use serde_json::{Value, json};

use crate::helpers::*;

const COPY: &str = "/folders/operations/copyToFolder";
const MOVE: &str = "/folders/operations/moveToFolder";

/// `/d` repeated `n` times.
fn deep(n: usize) -> String {
    "/d".repeat(n)
}

/// The folders of alice's box, by path (`folders/operations/search` lists them all).
async fn folder_count(app: &TestApp) -> usize {
    let (status, v) =
        app.post_rel("/folders/operations/search", json!({"selectionCriteria": {"maxEntries": 1000}})).await;
    assert_eq!(status, 200, "{v}");
    fn count(list: &Value) -> usize {
        list.as_array().map_or(0, |l| l.iter().map(|f| 1 + count(&f["subFolders"]["folder"])).sum())
    }
    count(&v["folderList"]["folder"])
}

fn bad_names() -> Vec<String> {
    vec!["a\u{0}b".into(), "a\nb".into(), "x".repeat(300), "y".repeat(100_000)]
}

#[tokio::test]
async fn a_deposit_cannot_make_a_folder_that_create_would_refuse() {
    let app = spawn_app().await;
    let before = folder_count(&app).await;
    let objects = format!("{}/objects", app.base(ALICE));
    let folders = format!("{}/folders", app.base(ALICE));
    for name in bad_names() {
        let path = format!("/RCSMessageStore/{name}");
        let res = app.post_json(&objects, json!({"object": {"parentFolderPath": path}})).await;
        assert_error(res, 400, "SVC0002").await;
        let res = app.post_json(&folders, json!({"folder": {"parentFolderPath": "/", "name": name}})).await;
        assert_error(res, 400, "SVC0002").await;
        // Multipart deposits and bulk creation go through the same check.
        let (ct, body) = form().root_fields(&json!({"parentFolderPath": path})).finish("multipart/form-data");
        assert_error(app.deposit(&ct, body).await, 400, "SVC0002").await;
        let (status, v) = app
            .post_rel(
                "/objects/operations/bulkCreation",
                json!({"objectList": {"object": [{"parentFolderPath": path}]}}),
            )
            .await;
        assert!(status == 200 || status == 400, "{v}");
        let item = &v["bulkResponseList"]["response"][0];
        assert_eq!(item["code"], 400, "{v}");
    }
    // Renaming to such a name is refused as well.
    let f = app.create_folder(json!({"parentFolderPath": "/", "name": "ok"})).await;
    for name in bad_names() {
        let res = app.put_json(&format!("{f}/folderName"), json!({"name": name})).await;
        assert_error(res, 400, "SVC0002").await;
    }
    assert_eq!(folder_count(&app).await, before + 1, "only the folder 'ok' was made");
}

#[tokio::test]
async fn folder_depth_and_path_length_are_bounded_everywhere() {
    let app = spawn_app_with(|s| {
        s.limits.max_folder_depth = 8;
        s.limits.max_folder_path_bytes = 64;
    })
    .await;
    let objects = format!("{}/objects", app.base(ALICE));
    let folders = format!("{}/folders", app.base(ALICE));

    // A deposit may make folders down to the limit, not one level more.
    let res = app.post_json(&objects, json!({"object": {"parentFolderPath": deep(8)}})).await;
    assert_eq!(res.status(), 201);
    let count = folder_count(&app).await;
    let res = app.post_json(&objects, json!({"object": {"parentFolderPath": deep(9)}})).await;
    let exc = assert_error(res, 403, "POL0001").await;
    assert!(exc["variables"][0].as_str().unwrap().contains("limits.max_folder_depth"), "{exc}");
    // The amplification of the original report: thousands of levels in one small request.
    let res = app.post_json(&objects, json!({"object": {"parentFolderPath": deep(4000)}})).await;
    assert_error(res, 403, "POL0001").await;
    // Too long a path, though shallow.
    let long = format!("/{}/{}", "p".repeat(40), "q".repeat(40));
    let res = app.post_json(&objects, json!({"object": {"parentFolderPath": long}})).await;
    let exc = assert_error(res, 403, "POL0001").await;
    assert!(exc["variables"][0].as_str().unwrap().contains("limits.max_folder_path_bytes"), "{exc}");
    // POST folders under the deepest folder, by path and by reference.
    let res = app.post_json(&folders, json!({"folder": {"parentFolderPath": deep(8), "name": "x"}})).await;
    assert_error(res, 403, "POL0001").await;
    let deepest = {
        let res = app.get(&format!("{}/folders/operations/pathToId?path={}", app.base(ALICE), enc(&deep(8)))).await;
        let v: Value = res.json().await.unwrap();
        v["reference"]["resourceURL"].as_str().unwrap().to_string()
    };
    let res = app.post_json(&folders, json!({"folder": {"parentFolder": deepest, "name": "x"}})).await;
    assert_error(res, 403, "POL0001").await;
    // Bulk creation refuses the item, not the request.
    let (status, v) = app
        .post_rel(
            "/objects/operations/bulkCreation",
            json!({"objectList": {"object": [{"parentFolderPath": deep(9)}, {"parentFolderPath": "/fine"}]}}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let codes: Vec<i64> =
        v["bulkResponseList"]["response"].as_array().unwrap().iter().map(|r| r["code"].as_i64().unwrap()).collect();
    assert_eq!(codes, vec![403, 201]);
    assert_eq!(folder_count(&app).await, count + 1, "only /fine was made");

    // Rename: the longest path of the subtree counts.
    let top = {
        let res = app.get(&format!("{}/folders/operations/pathToId?path=%2Fd", app.base(ALICE))).await;
        let v: Value = res.json().await.unwrap();
        v["reference"]["resourceURL"].as_str().unwrap().to_string()
    };
    let res = app.put_json(&format!("{top}/folderName"), json!({"name": "z".repeat(60)})).await;
    let exc = assert_error(res, 403, "POL0001").await;
    assert!(exc["variables"][0].as_str().unwrap().contains("limits.max_folder_path_bytes"), "{exc}");
    let res = app.put_json(&format!("{top}/folderName"), json!({"name": "e"})).await;
    assert!(res.status().is_success(), "a short name fits");

    // Move and copy: the subtree may not end up deeper than the limit.
    let other = app.create_folder(json!({"parentFolderPath": "/", "name": "o"})).await;
    let count = folder_count(&app).await;
    for op in [COPY, MOVE] {
        let body = json!({"targetSourceRef": {"targetRef": {"resourceURL": other}, "sourceRefs": {
            "folders": {"folderReference": [{"resourceURL": top}]}}}});
        let (status, v) = app.post_rel(op, body).await;
        assert_eq!((status, message_id(&v)), (403, "POL0001"), "{op}: {v}");
    }
    assert_eq!(folder_count(&app).await, count, "nothing copied");
    let res =
        app.get(&format!("{}/folders/operations/pathToId?path={}", app.base(ALICE), enc("/e/d/d/d/d/d/d/d"))).await;
    assert_eq!(res.status(), 200, "the subtree stayed where it was");
}

/// Lowering a limit keeps the folders that exist usable: deposits into them by path work,
/// only new folders beyond the limit are refused.
#[tokio::test]
async fn a_lowered_limit_keeps_existing_folders_usable() {
    let app = spawn_app().await;
    let objects = format!("{}/objects", app.base(ALICE));
    let res = app.post_json(&objects, json!({"object": {"parentFolderPath": deep(10)}})).await;
    assert_eq!(res.status(), 201);

    let mut s = app.settings();
    s.server.listen = "127.0.0.1:0".into();
    s.limits.max_folder_depth = 4;
    let lowered = cpm_nms::startup::Application::build(s).await.unwrap();
    let objects = format!("{}/nms/v1/base/{}/objects", lowered.public_url(), enc(ALICE));
    tokio::spawn(lowered.run_until_stopped());
    let post = |path: String| {
        app.client
            .post(&objects)
            .basic_auth("alice", Some(PW))
            .json(&json!({"object": {"parentFolderPath": path}}))
            .send()
    };
    assert_eq!(post(deep(10)).await.unwrap().status(), 201, "an existing deep folder");
    let res = post(format!("{}/new", deep(10))).await.unwrap();
    assert_error(res, 403, "POL0001").await;
}
