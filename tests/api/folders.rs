//! Folders (NMS 6.10-6.12, CPM 6.1.3).

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

async fn folder(app: &TestApp, url: &str) -> Value {
    let res = app.get(url).await;
    assert_eq!(res.status(), 200, "GET {url}");
    res.json::<Value>().await.expect("json")["folder"].clone()
}

fn attr<'a>(f: &'a Value, name: &str) -> Option<&'a Value> {
    f["attributes"]["attribute"].as_array().expect("array").iter().find(|a| a["name"] == name).map(|a| &a["value"])
}

#[tokio::test]
async fn exactly_one_root_with_root_yes_and_empty_name() {
    let app = spawn_app().await;
    let root = app.root().await;
    let f = folder(&app, &format!("{root}?path=Yes")).await;
    assert!(f.get("parentFolder").is_none());
    assert_eq!(f["name"], "");
    assert_eq!(f["path"], "");
    assert_eq!(attr(&f, "Root"), Some(&json!(["Yes"])));
    assert_eq!(f["resourceURL"], root);
    assert!(f["lastModSeq"].is_u64());
}

/// NMS 6.10.5.2: the created folder reads back with Date and Name, path, name, lastModSeq.
#[tokio::test]
async fn create_by_path_and_by_url() {
    let app = spawn_app().await;
    let root = app.root().await;
    let main = app.create_folder(json!({"parentFolder": root, "name": "main", "attributes": {"attribute": []}})).await;
    let res = app
        .post_json(&format!("{}/folders", app.base(ALICE)), json!({"folder": {"parentFolderPath": "/main", "name": "NMSdiscussion", "attributes": {"attribute": [{"name": "Conversation-ID", "value": ["f81d4fae"]}]}}}))
        .await;
    assert_eq!(res.status(), 201);
    let location = res.headers().get("location").expect("Location").to_str().expect("str").to_string();
    let v: Value = res.json().await.expect("json");
    assert_eq!(v, json!({"reference": {"resourceURL": location, "path": "/main/NMSdiscussion"}}));
    let f = folder(&app, &format!("{location}?path=Yes")).await;
    let keys: Vec<&String> = f.as_object().expect("obj").keys().collect();
    assert_eq!(keys, ["parentFolder", "attributes", "resourceURL", "path", "name", "lastModSeq"]);
    assert_eq!(f["parentFolder"], main);
    assert_eq!(f["name"], "NMSdiscussion");
    assert_eq!(attr(&f, "Name"), Some(&json!(["NMSdiscussion"])));
    assert_eq!(attr(&f, "Conversation-ID"), Some(&json!(["f81d4fae"])));
    assert!(attr(&f, "Date").and_then(|d| d[0].as_str()).is_some_and(|d| d.ends_with('Z')));
    let without_path = folder(&app, &location).await;
    assert!(without_path.get("path").is_none());
    // No name: the server invents a unique one.
    let unnamed = app.create_folder(json!({"parentFolder": main})).await;
    assert!(!folder(&app, &unnamed).await["name"].as_str().expect("name").is_empty());
}

#[tokio::test]
async fn bad_folder_creations() {
    let app = spawn_app().await;
    let url = format!("{}/folders", app.base(ALICE));
    let res = app.post_json(&url, json!({"folder": {"name": "x"}})).await;
    assert_error(res, 400, "SVC0002").await;
    let res = app
        .post_json(&url, json!({"folder": {"parentFolderPath": "/main/myBackups/Football", "name": "WorldCup2014"}}))
        .await;
    assert_error(res, 400, "SVC0002").await;
    let res = app.post_json(&url, json!({"folder": {"parentFolderPath": "/", "name": "a/b"}})).await;
    assert_error(res, 400, "SVC0002").await;
    let res = app.post_json(&url, json!({"folder": {"parentFolderPath": "/", "name": "n", "attributes": {"attribute": [{"name": "Name", "value": ["n"]}]}}})).await;
    assert_error(res, 400, "SVC0002").await;
    let res = app.post_json(&url, json!({"folder": {"parentFolderPath": "/", "name": "n", "attributes": {"attribute": [{"name": "root", "value": ["Yes"]}]}}})).await;
    assert_error(res, 400, "SVC0002").await;
    app.create_folder(json!({"parentFolderPath": "/", "name": "dup"})).await;
    let res = app.post_json(&url, json!({"folder": {"parentFolderPath": "/", "name": "dup"}})).await;
    assert_error(res, 409, "SVC0002").await;
    let res = app
        .post_json(&url, json!({"folder": {"parentFolder": format!("{}/folders/nope", app.base(ALICE)), "name": "x"}}))
        .await;
    assert_error(res, 400, "SVC0002").await;
    let res =
        app.req(Method::POST, &url).header("Content-Type", "application/json").body("[1,").send().await.expect("send");
    assert_error(res, 400, "SVC0002").await;
    let res =
        app.req(Method::POST, &url).header("Content-Type", "text/plain").body("folder").send().await.expect("send");
    assert_error(res, 415, "POL0011").await;
}

#[tokio::test]
async fn listing_pages_with_opaque_cursors() {
    let app = spawn_app().await;
    let parent = app.create_folder(json!({"parentFolderPath": "/", "name": "big"})).await;
    let mut folders = Vec::new();
    for i in 0..3 {
        folders.push(app.create_folder(json!({"parentFolder": parent, "name": format!("sub{i}")})).await);
    }
    let mut objects = Vec::new();
    for _ in 0..4 {
        objects.push(app.create_object(json!({"parentFolder": parent})).await);
    }
    let mut got_folders = Vec::new();
    let mut got_objects = Vec::new();
    let mut url = format!("{parent}?listFilter=All&maxEntries=3");
    let mut pages = 0;
    loop {
        let f = folder(&app, &url).await;
        pages += 1;
        for r in f["subFolders"]["folderReference"].as_array().expect("subFolders") {
            got_folders.push(r["resourceURL"].as_str().expect("url").to_string());
        }
        for r in f["objects"]["objectReference"].as_array().expect("objects") {
            got_objects.push(r["resourceURL"].as_str().expect("url").to_string());
        }
        match f.get("cursor").and_then(Value::as_str) {
            Some(c) => url = format!("{parent}?listFilter=All&maxEntries=3&fromCursor={}", enc(c)),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(got_folders, folders);
    assert_eq!(got_objects, objects);

    // Exactly-full pages: no dangling cursor after the last entry.
    let f = folder(&app, &format!("{parent}?listFilter=Subfolders&maxEntries=3")).await;
    assert_eq!(f["subFolders"]["folderReference"].as_array().map(Vec::len), Some(3));
    assert!(f.get("cursor").is_none() && f.get("objects").is_none());
    let f = folder(&app, &format!("{parent}?listFilter=Objects")).await;
    assert_eq!(f["objects"]["objectReference"].as_array().map(Vec::len), Some(4));
    assert!(f.get("subFolders").is_none());

    // Tampered or foreign cursors are refused.
    let first = folder(&app, &format!("{parent}?listFilter=All&maxEntries=1")).await;
    let cursor = first["cursor"].as_str().expect("cursor").to_string();
    let mut bad = cursor.clone();
    bad.push('A');
    assert_error(app.get(&format!("{parent}?listFilter=All&fromCursor={}", enc(&bad))).await, 400, "SVC0002").await;
    assert_error(app.get(&format!("{parent}?listFilter=Objects&fromCursor={}", enc(&cursor))).await, 400, "SVC0002")
        .await;
    assert_error(app.get(&format!("{}?listFilter=All&fromCursor={}", folders[0], enc(&cursor))).await, 400, "SVC0002")
        .await;
    assert_error(app.get(&format!("{parent}?listFilter=Everything")).await, 400, "SVC0003").await;
    assert_error(app.get(&format!("{parent}?listFilter=All&maxEntries=-1")).await, 400, "SVC0002").await;
}

#[tokio::test]
async fn attr_filter_adds_the_costly_counts_only_on_request() {
    let app = spawn_app().await;
    let parent = app.create_folder(json!({"parentFolderPath": "/", "name": "p"})).await;
    let child = app.create_folder(json!({"parentFolder": parent, "name": "c"})).await;
    app.create_object(json!({"parentFolder": parent, "flags": {"flag": ["\\Seen"]}})).await;
    app.create_object(json!({"parentFolder": parent})).await;
    app.create_object(json!({"parentFolder": child})).await;
    let plain = folder(&app, &parent).await;
    for n in ["MsgCount", "UnreadMsgCount", "Size", "SubtreeMsgCount", "SubtreeUnreadMsgCount", "SubtreeSize"] {
        assert!(attr(&plain, n).is_none(), "{n} without attrFilter");
    }
    let f = folder(&app, &format!("{parent}?attrFilter=MsgCount&attrFilter=UnreadMsgCount&attrFilter=SubtreeMsgCount&attrFilter=SubtreeUnreadMsgCount&attrFilter=Size")).await;
    assert_eq!(attr(&f, "MsgCount"), Some(&json!(["2"])));
    assert_eq!(attr(&f, "UnreadMsgCount"), Some(&json!(["1"])));
    assert_eq!(attr(&f, "SubtreeMsgCount"), Some(&json!(["3"])));
    assert_eq!(attr(&f, "SubtreeUnreadMsgCount"), Some(&json!(["2"])));
    assert_eq!(attr(&f, "Size"), Some(&json!(["0"])));
}

#[tokio::test]
async fn rename_moves_descendant_paths_and_root_rename_is_refused() {
    let app = spawn_app().await;
    let base = app.base(ALICE);
    let a = app.create_folder(json!({"parentFolderPath": "/", "name": "a"})).await;
    app.create_folder(json!({"parentFolderPath": "/", "name": "taken"})).await;
    let obj = app.create_object(json!({"parentFolderPath": "/a/b"})).await;
    let v: Value = app.get(&format!("{a}/folderName")).await.json().await.expect("json");
    assert_eq!(v, json!({"name": "a"}));
    let res = app.put_json(&format!("{a}/folderName"), json!({"name": "renamed"})).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.expect("json"), json!({"name": "renamed"}));
    let o: Value = app.get(&obj).await.json().await.expect("json");
    assert_eq!(o["object"]["path"], format!("/renamed/b/{}", last_segment(&obj)));
    let res = app.get(&format!("{base}/folders/operations/pathToId?path=%2Frenamed%2Fb")).await;
    assert_eq!(res.status(), 200);
    assert_error(app.put_json(&format!("{a}/folderName"), json!({"name": "taken"})).await, 409, "SVC0002").await;
    assert_error(app.put_json(&format!("{a}/folderName"), json!({"name": "x/y"})).await, 400, "SVC0002").await;
    assert_error(app.put_json(&format!("{a}/folderName"), json!({"nom": "x"})).await, 400, "SVC0002").await;
    let root = app.root().await;
    let exc =
        assert_error(app.put_json(&format!("{root}/folderName"), json!({"name": "top"})).await, 403, "POL1030").await;
    assert!(exc.get("variables").is_none());
}

#[tokio::test]
async fn root_rename_allowed_when_policy_says_so() {
    let app = spawn_app_with(|s| s.nms.forbid_root_rename = false).await;
    let root = app.root().await;
    let res = app.put_json(&format!("{root}/folderName"), json!({"name": "top"})).await;
    assert_eq!(res.status(), 200);
    let f = folder(&app, &root).await;
    assert_eq!(f["name"], "top");
}

#[tokio::test]
async fn delete_is_recursive() {
    let app = spawn_app().await;
    let base = app.base(ALICE);
    let top = app.create_folder(json!({"parentFolderPath": "/", "name": "top"})).await;
    let o1 = app.create_object(json!({"parentFolderPath": "/top"})).await;
    let o2 = app.create_object(json!({"parentFolderPath": "/top/deep/er"})).await;
    let keep = app.create_object(json!({"parentFolderPath": "/topmost"})).await;
    assert_eq!(app.delete(&top).await.status(), 204);
    for u in [&top, &o1, &o2] {
        assert_error(app.get(u).await, 404, "SVC0004").await;
    }
    assert_error(app.get(&format!("{base}/folders/operations/pathToId?path=%2Ftop%2Fdeep")).await, 404, "SVC0004")
        .await;
    assert_eq!(app.get(&keep).await.status(), 200, "a sibling sharing the name prefix survives");
    assert_error(app.delete(&top).await, 404, "SVC0004").await;
    let root = app.root().await;
    assert_error(app.delete(&root).await, 403, "POL0001").await;
}
