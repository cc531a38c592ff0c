//! Authentication and box isolation.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn missing_or_wrong_credentials_are_401_with_a_challenge() {
    let app = spawn_app().await;
    let url = format!("{}/folders/operations/pathToId", app.base(ALICE));
    let res = app.client.get(&url).send().await.expect("send");
    assert_eq!(res.status(), 401);
    let challenge = res.headers().get("www-authenticate").expect("WWW-Authenticate").to_str().expect("s").to_string();
    assert!(challenge.starts_with("Basic realm="), "{challenge}");
    assert_error(res, 401, "POL0001").await;
    let res = app.client.get(&url).basic_auth("alice", Some("wrong")).send().await.expect("send");
    assert_error(res, 401, "POL0001").await;
    let res = app.client.get(&url).basic_auth("nobody", Some(PW)).send().await.expect("send");
    assert_error(res, 401, "POL0001").await;
    let res = app.client.get(&url).header("Authorization", "Basic %%%").send().await.expect("send");
    assert_error(res, 401, "POL0001").await;
    let res = app.client.get(&url).bearer_auth("token").send().await.expect("send");
    assert_error(res, 401, "POL0001").await;
}

#[tokio::test]
async fn another_box_is_refused_without_its_data() {
    let app = spawn_app().await;
    // bob's object, looked up through bob's box by alice: refused.
    let res = app
        .req_as("bob", Method::POST, &format!("{}/objects", app.base(BOB)))
        .json(&json!({"object": {"attributes": {"attribute": [{"name": "Subject", "value": ["secret"]}]}}}))
        .send()
        .await
        .expect("send");
    let bob_obj = res.json::<Value>().await.expect("json")["reference"]["resourceURL"].as_str().expect("u").to_string();
    let res = app.get(&bob_obj).await;
    let body = res.text().await.expect("text");
    assert!(!body.contains("secret"));
    let res = app.get(&bob_obj).await;
    assert_error(res, 403, "POL0001").await;
    for (m, u) in [
        (Method::DELETE, bob_obj.clone()),
        (Method::GET, format!("{bob_obj}/flags")),
        (Method::PUT, format!("{bob_obj}/flags/%5CSeen")),
        (Method::GET, format!("{}/folders/operations/pathToId", app.base(BOB))),
        (Method::POST, format!("{}/folders", app.base(BOB))),
    ] {
        let res = app.req(m.clone(), &u).send().await.expect("send");
        assert_error(res, 403, "POL0001").await;
    }
    // bob's object id through alice's own box: it simply does not exist there.
    let res = app.get(&format!("{}/objects/{}", app.base(ALICE), last_segment(&bob_obj))).await;
    assert_error(res, 404, "SVC0004").await;
    // Still intact for bob.
    let res = app.req_as("bob", Method::GET, &bob_obj).send().await.expect("send");
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn service_principal_acts_on_any_box() {
    let app = spawn_app().await;
    for addr in [ALICE, BOB] {
        let res = app
            .req_as("pf", Method::POST, &format!("{}/objects", app.base(addr)))
            .json(&json!({"object": {"parentFolderPath": "/Default"}}))
            .send()
            .await
            .expect("send");
        assert_eq!(res.status(), 201, "{addr}");
    }
    let v: Value = app
        .get(&format!("{}/folders/operations/pathToId?path=%2FDefault", app.base(ALICE)))
        .await
        .json()
        .await
        .expect("json");
    assert!(v["reference"]["resourceURL"].is_string());
}

#[tokio::test]
async fn acr_auth_names_the_callers_box() {
    let app = spawn_app().await;
    let url = app.create_object(json!({})).await;
    let id = last_segment(&url);
    let res = app.get(&format!("{}/nms/v1/base/acr%3Aauth/objects/{id}", app.url)).await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.expect("json");
    assert_eq!(v["object"]["resourceURL"], url, "answers name the real box, encoded");
    let res = app
        .req_as("pf", Method::GET, &format!("{}/nms/v1/base/acr%3Aauth/objects/{id}", app.url))
        .send()
        .await
        .expect("send");
    assert_error(res, 400, "SVC0002").await;
}

#[tokio::test]
async fn box_ids_are_accepted_encoded_or_not() {
    let app = spawn_app().await;
    for b in ["tel%3A%2B12125551212", "tel:+12125551212", "tel:%2B12125551212"] {
        let res = app.get(&format!("{}/nms/v1/base/{b}/folders/operations/pathToId", app.url)).await;
        assert_eq!(res.status(), 200, "{b}");
        let v: Value = res.json().await.expect("json");
        assert!(v["reference"]["resourceURL"].as_str().expect("u").contains("/tel%3A%2B12125551212/"));
    }
}

#[tokio::test]
async fn successful_logins_are_cached() {
    let app = spawn_app().await;
    let url = format!("{}/folders/operations/pathToId", app.base(ALICE));
    let before = verifications(&app).await;
    for _ in 0..10 {
        assert_eq!(app.get(&url).await.status(), 200);
    }
    assert_eq!(verifications(&app).await - before, 1, "one argon2 run for ten requests");
    // A wrong password is never served from the cache.
    let res = app.client.get(&url).basic_auth("alice", Some("nope")).send().await.expect("send");
    assert_eq!(res.status(), 401);
}

async fn verifications(app: &TestApp) -> u64 {
    app.auth.verifications()
}

#[tokio::test]
async fn service_only_folders_refuse_subscribers_with_pol1031() {
    let app = spawn_app_with(|s| s.nms.service_only_folders = vec!["/Default".into()]).await;
    let base = app.base(ALICE);
    // The service account deposits there (creating the folder on the way).
    let res = app
        .req_as("pf", Method::POST, &format!("{base}/objects"))
        .json(&json!({"object": {"parentFolderPath": "/Default/inbox"}}))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 201);
    let v: Value = app.get(&format!("{base}/folders/operations/pathToId?path=%2FDefault")).await.json().await.unwrap();
    let default_url = v["reference"]["resourceURL"].as_str().unwrap().to_string();
    let objects_before = app.get(&format!("{default_url}?listFilter=All")).await.text().await.unwrap();

    // The subscriber may not create objects or folders there, by path or by URL, subtree included.
    for object in [
        json!({"parentFolderPath": "/Default"}),
        json!({"parentFolderPath": "/Default/inbox/deeper"}),
        json!({"parentFolder": default_url}),
    ] {
        let res = app.post_json(&format!("{base}/objects"), json!({ "object": object })).await;
        let exc = assert_error(res, 403, "POL1031").await;
        assert_eq!(exc["variables"][0].as_str().unwrap().split('/').nth(1), Some("Default"), "{exc}");
    }
    for folder in [json!({"parentFolder": default_url, "name": "mine"}), json!({"parentFolderPath": "/Default/inbox"})]
    {
        let res = app.post_json(&format!("{base}/folders"), json!({ "folder": folder })).await;
        assert_error(res, 403, "POL1031").await;
    }
    let (ct, body) = form()
        .root_fields(&json!({"parentFolderPath": "/Default"}))
        .part(&[("Content-Disposition", "form-data; name=\"attachments\""), ("Content-Type", "text/plain")], b"hi")
        .finish("multipart/form-data");
    assert_error(app.deposit(&ct, body).await, 403, "POL1031").await;
    // Nothing was created by the refusals.
    assert_eq!(app.get(&format!("{default_url}?listFilter=All")).await.text().await.unwrap(), objects_before);
    let res = app.get(&format!("{base}/folders/operations/pathToId?path=%2FDefault%2Finbox%2Fdeeper")).await;
    assert_error(res, 404, "SVC0004").await;

    // A sibling whose name merely starts the same is not protected; reading is not refused.
    let res = app.post_json(&format!("{base}/objects"), json!({"object": {"parentFolderPath": "/Defaults"}})).await;
    assert_eq!(res.status(), 201);
    assert_eq!(app.get(&default_url).await.status(), 200);
}
