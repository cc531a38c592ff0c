//! pathToId for objects (NMS 6.8) and folders (NMS 6.14).

use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn object_path_to_id_get_and_post() {
    let app = spawn_app().await;
    let base = app.base(ALICE);
    let url = app.create_object(json!({"parentFolderPath": "/main/conversation5"})).await;
    let id = last_segment(&url);
    let path = format!("/main/conversation5/{id}");
    let res = app.get(&format!("{base}/objects/operations/pathToId?path={}", enc(&path))).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.expect("json"), json!({"reference": {"resourceURL": url, "path": path}}));

    let missing = "/main/conversation5/nope".to_string();
    let res = app.get(&format!("{base}/objects/operations/pathToId?path={}", enc(&missing))).await;
    assert_error(res, 404, "SVC0004").await;
    let res = app.get(&format!("{base}/objects/operations/pathToId?path={}", enc("/main//conversation5/x"))).await;
    assert_error(res, 400, "SVC0002").await;
    assert_error(app.get(&format!("{base}/objects/operations/pathToId")).await, 400, "SVC0002").await;

    let res = app
        .post_json(
            &format!("{base}/objects/operations/pathToId"),
            json!({"pathList": {"path": [path, "/cleanups/x/y", "/personal//oId222"]}}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.expect("json");
    let r = v["bulkResponseList"]["response"].as_array().expect("array");
    assert_eq!(r.len(), 3);
    assert_eq!(r[0], json!({"code": 200, "reason": "OK", "success": {"resourceURL": url, "path": path}}));
    assert_eq!(r[1]["code"], 404);
    assert_eq!(r[1]["reason"], "Not Found");
    assert_eq!(r[1]["failure"]["serviceException"]["messageId"], "SVC0004");
    assert_eq!(r[1]["failure"]["serviceException"]["variables"], json!(["/cleanups/x/y"]));
    assert_eq!(r[2]["code"], 400);
    assert_eq!(r[2]["failure"]["serviceException"]["messageId"], "SVC0002");
    assert!(r[2].get("success").is_none());
}

#[tokio::test]
async fn folder_path_to_id_finds_the_root_without_a_path() {
    let app = spawn_app().await;
    let base = app.base(ALICE);
    let res = app.get(&format!("{base}/folders/operations/pathToId")).await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.expect("json");
    let root = v["reference"]["resourceURL"].as_str().expect("url").to_string();
    assert!(root.starts_with(&format!("{base}/folders/")));
    assert_eq!(v["reference"]["path"], "");
    let v: Value = app.get(&format!("{base}/folders/operations/pathToId?path=%2F")).await.json().await.expect("json");
    assert_eq!(v["reference"]["resourceURL"], root);

    let main = app.create_folder(json!({"parentFolder": root, "name": "main"})).await;
    let v: Value =
        app.get(&format!("{base}/folders/operations/pathToId?path=%2Fmain")).await.json().await.expect("json");
    assert_eq!(v, json!({"reference": {"resourceURL": main, "path": "/main"}}));
    assert_error(app.get(&format!("{base}/folders/operations/pathToId?path=%2Fnope")).await, 404, "SVC0004").await;

    let res = app
        .post_json(
            &format!("{base}/folders/operations/pathToId"),
            json!({"pathList": {"path": ["/main", "/nope", "//"]}}),
        )
        .await;
    let v: Value = res.json().await.expect("json");
    let r = v["bulkResponseList"]["response"].as_array().expect("array");
    assert_eq!(r[0]["success"]["resourceURL"], main);
    assert_eq!(r[1]["code"], 404);
    assert_eq!(r[2]["code"], 400);
    // A bad pathList document is a whole-request error.
    let res = app.post_json(&format!("{base}/folders/operations/pathToId"), json!({"paths": []})).await;
    assert_error(res, 400, "SVC0002").await;
}
