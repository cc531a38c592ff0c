//! Flags of objects (NMS 6.3, 6.4) and folders (CPM 6.6.1.1).

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

async fn last_mod_seq(app: &TestApp, url: &str) -> u64 {
    let v: Value = app.get(url).await.json().await.expect("json");
    v["object"]["lastModSeq"].as_u64().or_else(|| v["folder"]["lastModSeq"].as_u64()).expect("lastModSeq")
}

#[tokio::test]
async fn flag_list_get_and_put() {
    let app = spawn_app().await;
    let url = app.create_object(json!({"flags": {"flag": ["\\Seen", "\\Flagged"]}})).await;
    let res = app.get(&format!("{url}/flags")).await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.expect("json");
    assert_eq!(v, json!({"flagList": {"flag": ["\\Seen", "\\Flagged"], "resourceURL": format!("{url}/flags")}}));
    let res = app
        .put_json(&format!("{url}/flags"), json!({"flagList": {"flag": ["\\Seen", "\\Flagged", "\\Answered"]}}))
        .await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.expect("json");
    assert_eq!(v["flagList"]["flag"], json!(["\\Seen", "\\Flagged", "\\Answered"]));
    // Duplicates (case-insensitive) collapse.
    let res = app.put_json(&format!("{url}/flags"), json!({"flagList": {"flag": ["$MDNSent", "$mdnsent"]}})).await;
    let v: Value = res.json().await.expect("json");
    assert_eq!(v["flagList"]["flag"], json!(["$MDNSent"]));
    let o: Value = app.get(&url).await.json().await.expect("json");
    assert_eq!(o["object"]["flags"]["flag"], json!(["$MDNSent"]));
}

#[tokio::test]
async fn individual_flag_put_get_delete_follow_the_spec() {
    let app = spawn_app().await;
    let url = app.create_object(json!({})).await;
    let flag = format!("{url}/flags/%5CSeen");
    let res = app.get(&flag).await;
    assert_eq!(res.status(), 404);
    assert_eq!(res.json::<Value>().await.expect("json"), json!({"empty": null}));

    let res =
        app.req(Method::PUT, &flag).header("Content-Type", "application/json").body("").send().await.expect("send");
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers().get("location").expect("Location").to_str().expect("str"), flag);
    let res = app.req(Method::PUT, &flag).send().await.expect("send");
    assert_eq!(res.status(), 204, "already set");

    assert_eq!(app.get(&flag).await.status(), 204);
    assert_eq!(app.get(&format!("{url}/flags/%5Cseen")).await.status(), 204, "case-insensitive");

    assert_eq!(app.delete(&format!("{url}/flags/%5CSEEN")).await.status(), 204);
    let res = app.delete(&flag).await;
    assert_eq!(res.status(), 404);
    assert_eq!(res.json::<Value>().await.expect("json"), json!({"empty": null}));
}

#[tokio::test]
async fn only_real_changes_bump_last_mod_seq() {
    let app = spawn_app().await;
    let url = app.create_object(json!({})).await;
    let s0 = last_mod_seq(&app, &url).await;
    app.req(Method::PUT, &format!("{url}/flags/%5CSeen")).send().await.expect("send");
    let s1 = last_mod_seq(&app, &url).await;
    assert!(s1 > s0);
    app.req(Method::PUT, &format!("{url}/flags/%5Cseen")).send().await.expect("send");
    app.put_json(&format!("{url}/flags"), json!({"flagList": {"flag": ["\\SEEN"]}})).await;
    assert_eq!(last_mod_seq(&app, &url).await, s1, "no-op changes keep lastModSeq");
    app.delete(&format!("{url}/flags/%5CAnswered")).await;
    assert_eq!(last_mod_seq(&app, &url).await, s1);
    app.delete(&format!("{url}/flags/%5CSeen")).await;
    assert!(last_mod_seq(&app, &url).await > s1);
}

#[tokio::test]
async fn illegal_flag_names_are_400_svc0002() {
    let app = spawn_app().await;
    let url = app.create_object(json!({})).await;
    for bad in ["a%20b", "x(y", "%5C", "%22q%22", "%5C%5CSeen"] {
        let res = app.req(Method::PUT, &format!("{url}/flags/{bad}")).send().await.expect("send");
        assert_error(res, 400, "SVC0002").await;
    }
    let res = app.put_json(&format!("{url}/flags"), json!({"flagList": {"flag": ["ok", "not ok"]}})).await;
    assert_error(res, 400, "SVC0002").await;
    let res =
        app.post_json(&format!("{}/objects", app.base(ALICE)), json!({"object": {"flags": {"flag": ["a b"]}}})).await;
    assert_error(res, 400, "SVC0002").await;
    let res = app.put_json(&format!("{url}/flags"), json!({"flags": []})).await;
    assert_error(res, 400, "SVC0002").await;
}

#[tokio::test]
async fn flags_of_missing_objects_are_404() {
    let app = spawn_app().await;
    let base = app.base(ALICE);
    assert_error(app.get(&format!("{base}/objects/nope/flags/%5CSeen")).await, 404, "SVC0004").await;
    let res = app.req(Method::PUT, &format!("{base}/objects/nope/flags/%5CSeen")).send().await.expect("send");
    assert_error(res, 404, "SVC0004").await;
    let res = app.put_json(&format!("{base}/objects/nope/flags"), json!({"flagList": {"flag": []}})).await;
    assert_error(res, 404, "SVC0004").await;
}

#[tokio::test]
async fn folders_have_flags_too() {
    let app = spawn_app().await;
    let folder = app.create_folder(json!({"parentFolderPath": "/", "name": "f"})).await;
    let s0 = last_mod_seq(&app, &folder).await;
    let res = app.req(Method::PUT, &format!("{folder}/flags/%5CSeen")).send().await.expect("send");
    assert_eq!(res.status(), 201);
    assert!(last_mod_seq(&app, &folder).await > s0, "a flag change is a folder change");
    assert_eq!(app.get(&format!("{folder}/flags/%5CSeen")).await.status(), 204);
    let v: Value = app.get(&format!("{folder}/flags")).await.json().await.expect("json");
    assert_eq!(v["flagList"]["flag"], json!(["\\Seen"]));
    assert_eq!(v["flagList"]["resourceURL"], format!("{folder}/flags"));
    let res = app.put_json(&format!("{folder}/flags"), json!({"flagList": {"flag": ["Archived"]}})).await;
    assert_eq!(res.json::<Value>().await.expect("json")["flagList"]["flag"], json!(["Archived"]));
    assert_eq!(app.delete(&format!("{folder}/flags/Archived")).await.status(), 204);
    assert_eq!(app.delete(&format!("{folder}/flags/Archived")).await.status(), 404);
}
