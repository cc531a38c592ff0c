//! Subscriptions delivered through long-polling notification channels: the index contract,
//! restart tokens, clientCorrelator idempotency, filters, and the long-poll rules.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

async fn send(app: &TestApp, method: Method, url: &str, body: Option<Value>) -> (u16, Value) {
    let mut r = app.req(method, url);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let res = r.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

fn nc(app: &TestApp) -> String {
    format!("{}/notificationchannel/v1/{}/channels", app.url, enc(ALICE))
}

/// A channel: (resourceURL, channelURL, callbackURL).
async fn channel(app: &TestApp) -> (String, String, String) {
    let body = json!({"notificationChannel": {"channelType": "LongPolling", "channelData": {"maxNotifications": 5}, "channelLifetime": 3600, "clientCorrelator": "c1", "applicationTag": "t"}});
    let (status, v) = send(app, Method::POST, &nc(app), Some(body)).await;
    assert_eq!(status, 201, "{v}");
    let c = &v["notificationChannel"];
    (
        c["resourceURL"].as_str().unwrap().to_string(),
        c["channelData"]["channelURL"].as_str().unwrap().to_string(),
        c["callbackURL"].as_str().unwrap().to_string(),
    )
}

async fn subscribe(app: &TestApp, callback: &str, extra: Value) -> (u16, Value) {
    let mut sub = json!({"callbackReference": {"notifyURL": callback, "callbackData": "cb"}, "duration": 600});
    for (k, v) in extra.as_object().unwrap() {
        sub[k] = v.clone();
    }
    send(app, Method::POST, &format!("{}/subscriptions", app.base(ALICE)), Some(json!({"nmsSubscription": sub}))).await
}

/// A long poll running in the background: its status and body when it ends.
fn spawn_poll(app: &TestApp, channel_url: &str) -> tokio::task::JoinHandle<(u16, Value)> {
    let client = app.client.clone();
    let url = channel_url.to_string();
    tokio::spawn(async move {
        let res = client
            .post(&url)
            .basic_auth("alice", Some(PW))
            .json(&json!({"longPollingRequestParameters": null}))
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.json::<Value>().await.unwrap_or(Value::Null))
    })
}

async fn poll(app: &TestApp, channel_url: &str) -> (u16, Value) {
    send(app, Method::POST, channel_url, Some(json!({"longPollingRequestParameters": null}))).await
}

/// The event kinds and resource URLs of a notification list.
fn events(list: &Value) -> Vec<(String, String)> {
    list["nmsEventList"]["nmsEvent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let (k, v) = e.as_object().unwrap().iter().next().unwrap();
            (k.clone(), v["resourceURL"].as_str().unwrap_or("").to_string())
        })
        .collect()
}

#[tokio::test]
async fn subscriptions_deliver_through_long_polls_with_a_gapless_index() {
    let app = spawn_app_with(|s| s.sync.long_poll_secs = 2).await;
    let (resource, channel_url, callback) = channel(&app).await;
    let (status, v) = subscribe(&app, &callback, json!({"clientCorrelator": "sub-1"})).await;
    assert_eq!(status, 201, "{v}");
    let sub = v["nmsSubscription"].clone();
    assert_eq!(sub["index"], 1);
    assert!(sub["restartToken"].is_string() && sub["duration"].as_u64().unwrap() <= 600);
    let sub_url = sub["resourceURL"].as_str().unwrap().to_string();
    // A repeated clientCorrelator answers the same subscription.
    let (status, again) = subscribe(&app, &callback, json!({"clientCorrelator": "sub-1"})).await;
    assert_eq!(status, 201);
    assert_eq!(again["nmsSubscription"]["resourceURL"], sub_url.as_str());

    // Nothing pending: the poll times out with an empty list.
    let t = Instant::now();
    let (status, v) = poll(&app, &channel_url).await;
    assert_eq!((status, v.clone()), (200, json!({"notificationList": []})));
    assert!(t.elapsed() >= Duration::from_millis(1900));

    // A deposit made while a poll waits is delivered at once.
    let started = Instant::now();
    let waiting = spawn_poll(&app, &channel_url);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let o = app.create_object(json!({"correlationId": "m-1"})).await;
    let (_, v) = waiting.await.unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1500), "answered on the change, not the timeout: {took:?}");
    let list = &v["notificationList"][0];
    assert_eq!(list["nmsEventList"]["index"], 1);
    assert_eq!(list["nmsEventList"]["callbackData"], "cb");
    assert_eq!(list["nmsEventList"]["link"][0]["rel"], "NmsSubscription");
    assert_eq!(list["nmsEventList"]["link"][0]["href"], sub_url.as_str());
    assert_eq!(events(list), [("changedObject".to_string(), o.clone())]);
    let ev = &list["nmsEventList"]["nmsEvent"][0]["changedObject"];
    assert_eq!(ev["correlationId"], "m-1");
    assert!(ev["parentFolder"].is_string() && ev["lastModSeq"].is_u64() && ev["flags"]["flag"].is_array());
    let token1 = list["nmsEventList"]["restartToken"].as_str().unwrap().to_string();

    // Each further list: index + 1, never reused.
    app.req(Method::PUT, &format!("{o}/flags/%5CSeen")).send().await.unwrap();
    let (_, v) = poll(&app, &channel_url).await;
    assert_eq!(v["notificationList"][0]["nmsEventList"]["index"], 2);
    assert_eq!(events(&v["notificationList"][0]), [("changedObject".to_string(), o.clone())]);
    app.delete(&o).await;
    let (_, v) = poll(&app, &channel_url).await;
    assert_eq!(v["notificationList"][0]["nmsEventList"]["index"], 3);
    assert_eq!(events(&v["notificationList"][0]), [("deletedObject".to_string(), o.clone())]);

    // Gap recovery: update with the token of list 1; replay restarts there, the index goes on.
    let (status, v) = send(
        &app,
        Method::POST,
        &sub_url,
        Some(json!({"nmsSubscriptionUpdate": {"restartToken": token1, "duration": 900}})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["nmsSubscription"]["index"], 4);
    assert_eq!(v["nmsSubscription"]["restartToken"], token1.as_str());
    let (_, v) = poll(&app, &channel_url).await;
    assert_eq!(v["notificationList"][0]["nmsEventList"]["index"], 4);
    assert_eq!(events(&v["notificationList"][0]), [("deletedObject".to_string(), o.clone())], "condensed");

    // GET one, GET the list (only the caller's), DELETE.
    let (status, v) = send(&app, Method::GET, &sub_url, None).await;
    assert_eq!((status, v["nmsSubscription"]["index"].clone()), (200, json!(5)));
    let (_, v) = send(&app, Method::GET, &format!("{}/subscriptions", app.base(ALICE)), None).await;
    assert_eq!(v["nmsSubscriptionList"]["subscription"].as_array().unwrap().len(), 1);
    let bob = app.req_as("bob", Method::GET, &format!("{}/subscriptions", app.base(BOB))).send().await.unwrap();
    let bob: Value = bob.json().await.unwrap();
    assert_eq!(bob["nmsSubscriptionList"]["subscription"], json!([]));
    let (status, _) = send(&app, Method::DELETE, &sub_url, None).await;
    assert_eq!(status, 204);
    let (status, v) = send(&app, Method::GET, &sub_url, None).await;
    assert_eq!((status, message_id(&v)), (404, "SVC0004"));
    let (status, _) = send(&app, Method::GET, &resource, None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn filters_restart_tokens_and_resets() {
    let app = spawn_app_with(|s| s.sync.long_poll_secs = 1).await;
    let (_, channel_url, callback) = channel(&app).await;
    let b = app.nms.find_box("base", ALICE).await.unwrap().unwrap();
    let before = app.nms.current_token(&b).await.unwrap();
    let early = app
        .create_object(json!({"attributes": {"attribute": [{"name": "Message-Context", "value": ["chat-message"]}]}}))
        .await;
    // From a restart token: what changed since, filtered (pager messages only).
    let filter = json!({"criterion": [{"type": "Attribute", "name": "message-context", "value": "chat-message"}]});
    let (status, v) = subscribe(&app, &callback, json!({"restartToken": before, "filter": filter})).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["nmsSubscription"]["restartToken"], before.as_str(), "the token sent is echoed");
    app.create_object(
        json!({"attributes": {"attribute": [{"name": "Message-Context", "value": ["multimedia-message"]}]}}),
    )
    .await;
    let (_, v) = poll(&app, &channel_url).await;
    let lists = v["notificationList"].as_array().unwrap();
    assert_eq!(lists.len(), 1, "{v}");
    assert_eq!(events(&lists[0]), [("changedObject".to_string(), early.clone())]);

    // A box reset reaches the subscriber as one resetBox, whatever its filter.
    app.nms.reset_box(&b).await.unwrap();
    let (_, v) = poll(&app, &channel_url).await;
    assert_eq!(events(&v["notificationList"][0]), [("resetBox".to_string(), String::new())]);
    assert_eq!(v["notificationList"][0]["nmsEventList"]["index"], 2);

    // Refusals.
    let (status, v) =
        subscribe(&app, &callback, json!({"callbackReference": {"notifyURL": callback, "notificationFormat": "HTML"}}))
            .await;
    assert_eq!((status, message_id(&v)), (400, "SVC0003"), "notifications are XML or JSON: {v}");
    let (status, v) = subscribe(&app, &callback, json!({"restartToken": "forged"})).await;
    assert_eq!((status, message_id(&v)), (400, "SVC0002"));
    let bad = json!({"criterion": [{"type": "Unheard", "value": ""}]});
    let (status, v) = subscribe(&app, &callback, json!({"filter": bad})).await;
    assert_eq!((status, message_id(&v)), (400, "SVC0003"));
    let bad = json!({"criterion": [{"type": "CreatedObjects", "value": "forged"}]});
    let (status, v) = subscribe(&app, &callback, json!({"filter": bad})).await;
    assert_eq!((status, message_id(&v)), (400, "SVC0002"), "a forged creationCursor: {v}");
    let (status, v) =
        send(&app, Method::POST, &format!("{}/subscriptions", app.base(ALICE)), Some(json!({"nope": 1}))).await;
    assert_eq!((status, message_id(&v)), (400, "SVC0002"));
    // Bob cannot use alice's channel.
    let res = app
        .req_as("bob", Method::POST, &format!("{}/subscriptions", app.base(BOB)))
        .json(&json!({"nmsSubscription": {"callbackReference": {"notifyURL": callback}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
}

#[tokio::test]
async fn one_poll_per_channel_and_channel_lifecycle() {
    let app = spawn_app_with(|s| s.sync.long_poll_secs = 3).await;
    let (resource, channel_url, _) = channel(&app).await;
    let first = spawn_poll(&app, &channel_url);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = spawn_poll(&app, &channel_url);
    let (status, v) = first.await.unwrap();
    assert_eq!((status, message_id(&v)), (409, "SVC1012"), "a second poll ends the first");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Deleting the channel ends the open poll with 404.
    let (status, _) = send(&app, Method::DELETE, &resource, None).await;
    assert_eq!(status, 204);
    let (status, _) = second.await.unwrap();
    assert_eq!(status, 404);
    let (status, _) = send(&app, Method::GET, &resource, None).await;
    assert_eq!(status, 404);

    // Lifetime GET/PUT (PUT also without credentials), list, types, methods.
    let (resource, channel_url, _) = channel(&app).await;
    let (status, v) = send(&app, Method::GET, &format!("{resource}/channelLifetime"), None).await;
    assert_eq!(status, 200);
    assert!(v["notificationChannelLifetime"]["channelLifetime"].as_u64().unwrap() <= 3600);
    let res = app
        .client
        .put(format!("{resource}/channelLifetime"))
        .json(&json!({"notificationChannelLifetime": {"channelLifetime": 120}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["notificationChannelLifetime"]["channelLifetime"], 120);
    let (status, v) = send(&app, Method::GET, &nc(&app), None).await;
    assert_eq!(status, 200);
    assert_eq!(v["notificationChannelList"][0]["resourceURL"], resource.as_str());
    assert_eq!(v["notificationChannelList"][0]["notificationChannel"]["channelType"], "LongPolling");
    let (status, v) =
        send(&app, Method::POST, &nc(&app), Some(json!({"notificationChannel": {"channelType": "WebSockets"}}))).await;
    assert_eq!((status, message_id(&v)), (403, "POL1023"));
    for m in [Method::GET, Method::PUT, Method::DELETE] {
        let res = app.req(m, &channel_url).send().await.unwrap();
        assert_eq!(res.status(), 405);
        assert_eq!(res.headers()["allow"], "POST");
    }
    // Another user's channels are out of reach.
    let res = app.req_as("bob", Method::GET, &resource).send().await.unwrap();
    assert_eq!(res.status(), 403);
    let res = app.client.get(&resource).send().await.unwrap();
    assert_eq!(res.status(), 401);
}

/// The events of every list of a poll answer.
fn all_events(v: &Value) -> Vec<(String, String)> {
    v["notificationList"].as_array().unwrap().iter().flat_map(events).collect()
}

#[tokio::test]
async fn filters_apply_to_deletions_and_know_vanished_and_created_objects() {
    let app = spawn_app_with(|s| s.sync.long_poll_secs = 1).await;
    let (_, channel_url, callback) = channel(&app).await;
    let pager = json!({"attributes": {"attribute": [{"name": "Message-Context", "value": ["chat-message"]}]}});
    let mms = json!({"attributes": {"attribute": [{"name": "Message-Context", "value": ["multimedia-message"]}]}});
    let p1 = app.create_object(pager.clone()).await;
    let m1 = app.create_object(mms.clone()).await;
    let folder = app.create_folder(json!({"parentFolderPath": "/", "name": "f"})).await;
    let folder_id = last_segment(&folder);
    let p2 = app
        .create_object(json!({"parentFolder": folder, "attributes": {"attribute": [{"name": "Message-Context", "value": ["chat-message"]}]}}))
        .await;
    let m2 = app
        .create_object(json!({"parentFolder": folder, "attributes": {"attribute": [{"name": "Message-Context", "value": ["multimedia-message"]}]}}))
        .await;

    // A CreatedObjects cursor from now: only objects created after it pass.
    let (status, v) = app
        .post_rel("/objects/operations/search", json!({"selectionCriteria": {"maxEntries": 100, "searchCriteria": {"criterion": [{"type": "CreatedObjects", "value": ""}]}}}))
        .await;
    assert_eq!(status, 200, "{v}");
    let cursor = v["objectList"]["creationCursor"].as_str().unwrap().to_string();

    let by_context = json!({"criterion": [{"type": "Attribute", "name": "Message-Context", "value": "chat-message"}]});
    let (status, v) = subscribe(&app, &callback, json!({"filter": by_context})).await;
    assert_eq!(status, 201, "{v}");
    let vanished = json!({"criterion": [{"type": "VanishedObjects", "value": ""}]});
    let (status, v) = subscribe(&app, &callback, json!({"filter": vanished})).await;
    assert_eq!(status, 201, "{v}");
    let created = json!({"criterion": [{"type": "CreatedObjects", "value": cursor}]});
    let (status, v) = subscribe(&app, &callback, json!({"filter": created})).await;
    assert_eq!(status, 201, "{v}");

    // Deletions of one object each, one recursive folder deletion, a deposit.
    assert_eq!(app.delete(&p1).await.status(), 204);
    assert_eq!(app.delete(&m1).await.status(), 204);
    assert_eq!(app.delete(&folder).await.status(), 204);
    let fresh = app.create_object(mms.clone()).await;

    let (status, v) = poll(&app, &channel_url).await;
    assert_eq!(status, 200);
    let lists = v["notificationList"].as_array().unwrap();
    assert_eq!(lists.len(), 3, "one list per subscription: {v}");
    let folder_url = format!("{}/folders/{folder_id}", app.base(ALICE));
    // Pager messages only: the deleted ones (their tombstones remember the attribute).
    assert_eq!(
        events(&lists[0]),
        [("deletedObject".to_string(), p1.clone()), ("deletedObject".to_string(), p2.clone())],
        "{v}"
    );
    // Everything that went, objects and folders, and nothing that changed.
    let mut gone = events(&lists[1]);
    gone.sort();
    let mut expected = vec![
        ("deletedObject".to_string(), p1.clone()),
        ("deletedObject".to_string(), m1.clone()),
        ("deletedObject".to_string(), p2.clone()),
        ("deletedObject".to_string(), m2.clone()),
        ("deletedFolder".to_string(), folder_url),
    ];
    expected.sort();
    assert_eq!(gone, expected, "{v}");
    // Created after the cursor: only the fresh deposit.
    assert_eq!(events(&lists[2]), [("changedObject".to_string(), fresh)], "{v}");
    assert!(all_events(&v).iter().all(|(k, _)| k != "changedFolder"));
}

#[tokio::test]
async fn max_wait_time_holds_pending_lists_until_it_passes_or_max_notifications_are_ready() {
    let app = spawn_app_with(|s| s.sync.long_poll_secs = 5).await;
    let body = json!({"notificationChannel": {"channelType": "LongPolling", "channelData": {"maxNotifications": 2, "maxWaitTime": 1}}});
    let (status, v) = send(&app, Method::POST, &nc(&app), Some(body)).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["notificationChannel"]["channelData"]["maxWaitTime"], 1);
    let channel_url = v["notificationChannel"]["channelData"]["channelURL"].as_str().unwrap().to_string();
    let callback = v["notificationChannel"]["callbackURL"].as_str().unwrap().to_string();
    assert_eq!(subscribe(&app, &callback, json!({})).await.0, 201);

    // One list pending: the poll holds it for maxWaitTime (1 s), well before its 5 s timeout.
    let waiting = spawn_poll(&app, &channel_url);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let start = Instant::now();
    let id = app.create_object(json!({})).await;
    let (status, v) = waiting.await.unwrap();
    let held = start.elapsed();
    assert_eq!(status, 200);
    assert_eq!(all_events(&v), [("changedObject".to_string(), id)]);
    assert!(held >= Duration::from_millis(800), "answered after {held:?}, before maxWaitTime");
    assert!(held < Duration::from_millis(4000), "answered after {held:?}: waited for the poll timeout");

    // Two subscriptions with pending lists reach maxNotifications (2): answered at once.
    assert_eq!(subscribe(&app, &callback, json!({})).await.0, 201);
    let a = app.create_object(json!({})).await;
    let start = Instant::now();
    let (status, v) = poll(&app, &channel_url).await;
    assert_eq!(status, 200);
    assert_eq!(v["notificationList"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(all_events(&v), [("changedObject".to_string(), a.clone()), ("changedObject".to_string(), a)]);
    assert!(start.elapsed() < Duration::from_millis(800), "maxNotifications reached, yet held {:?}", start.elapsed());
}

#[tokio::test]
async fn service_accounts_reset_boxes_and_subscribers_get_reset_box() {
    let app = spawn_app_with(|s| s.sync.long_poll_secs = 5).await;
    let (_, channel_url, callback) = channel(&app).await;
    app.create_object(json!({})).await;
    assert_eq!(subscribe(&app, &callback, json!({})).await.0, 201);
    let reset = format!("{}/operations/resetBox", app.base(ALICE));

    // A subscriber may not reset its own box.
    let res = app.req(Method::POST, &reset).send().await.unwrap();
    assert_error(res, 403, "POL0001").await;

    let waiting = spawn_poll(&app, &channel_url);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let start = Instant::now();
    let res = app.req_as("pf", Method::POST, &reset).send().await.unwrap();
    assert_eq!(res.status(), 204);
    let (status, v) = waiting.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(all_events(&v), [("resetBox".to_string(), String::new())]);
    assert!(start.elapsed() < Duration::from_secs(2), "the reset woke the poll");
    // The box is empty.
    let (_, v) = app.post_rel("/objects/operations/search", json!({"selectionCriteria": {"maxEntries": 10}})).await;
    assert_eq!(v["objectList"]["object"].as_array().map_or(0, Vec::len), 0, "{v}");
    // Other methods are refused.
    let res = app.req_as("pf", Method::GET, &reset).send().await.unwrap();
    assert_eq!(res.status(), 405);

    // A resetBox list leads the answer, even behind an older subscription with changes:
    // clients look for it on the first event of the first list only.
    let stale = app.nms.current_token(&app.nms.find_box("base", ALICE).await.unwrap().unwrap()).await.unwrap();
    assert_eq!(app.req_as("pf", Method::POST, &reset).send().await.unwrap().status(), 204);
    let (resource, channel_url, callback) = channel(&app).await;
    assert_eq!(subscribe(&app, &callback, json!({})).await.0, 201);
    assert_eq!(subscribe(&app, &callback, json!({"restartToken": stale})).await.0, 201);
    let o = app.create_object(json!({})).await;
    let (_, v) = poll(&app, &channel_url).await;
    let lists = v["notificationList"].as_array().unwrap();
    assert_eq!(lists.len(), 2, "{v}");
    // The reset carries the subscriber to the current token (it resyncs by search).
    assert_eq!(events(&lists[0]), [("resetBox".to_string(), String::new())], "{v}");
    assert_eq!(events(&lists[1]), [("changedObject".to_string(), o)]);
    assert_eq!(send(&app, Method::DELETE, &resource, None).await.0, 204);
}

#[tokio::test]
async fn expired_subscriptions_disappear_and_deliver_nothing() {
    let app = spawn_app_with(|s| s.sync.long_poll_secs = 1).await;
    let (_, channel_url, callback) = channel(&app).await;
    let (status, v) = subscribe(&app, &callback, json!({"duration": 1})).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["nmsSubscription"]["duration"], 1);
    let sub_url = v["nmsSubscription"]["resourceURL"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    app.create_object(json!({})).await;
    let (status, v) = send(&app, Method::GET, &sub_url, None).await;
    assert_eq!((status, message_id(&v)), (404, "SVC0004"));
    let (_, v) = send(&app, Method::GET, &format!("{}/subscriptions", app.base(ALICE)), None).await;
    assert_eq!(v["nmsSubscriptionList"]["subscription"], json!([]));
    let (status, v) = poll(&app, &channel_url).await;
    assert_eq!((status, v), (200, json!({"notificationList": []})));
    // Updating it is too late as well; the housekeeping purge drops it for good.
    let (status, _) =
        send(&app, Method::POST, &sub_url, Some(json!({"nmsSubscriptionUpdate": {"duration": 60}}))).await;
    assert_eq!(status, 404);
    assert!(app.nms.purge_expired_subscriptions().await.unwrap() >= 1);
}

#[tokio::test]
async fn correlators_durations_and_one_list_per_subscription() {
    let app = spawn_app_with(|s| s.sync.long_poll_secs = 1).await;
    let (resource, channel_url, callback) = channel(&app).await;
    // An empty clientCorrelator correlates nothing (deployed clients always send "").
    let (_, a) = subscribe(&app, &callback, json!({"clientCorrelator": ""})).await;
    let (_, b) = subscribe(&app, &callback, json!({"clientCorrelator": ""})).await;
    assert_ne!(a["nmsSubscription"]["resourceURL"], b["nmsSubscription"]["resourceURL"]);
    for s in [&a, &b] {
        send(&app, Method::DELETE, s["nmsSubscription"]["resourceURL"].as_str().unwrap(), None).await;
    }
    // An expired subscription frees its clientCorrelator.
    let (status, v) = subscribe(&app, &callback, json!({"clientCorrelator": "c-9", "duration": 1})).await;
    assert_eq!(status, 201, "{v}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, again) = subscribe(&app, &callback, json!({"clientCorrelator": "c-9"})).await;
    assert_eq!(status, 201, "{again}");
    assert_ne!(again["nmsSubscription"]["resourceURL"], v["nmsSubscription"]["resourceURL"]);
    let sub_url = again["nmsSubscription"]["resourceURL"].as_str().unwrap().to_string();

    // Changes of several requests come as one list of the subscription.
    let o1 = app.create_object(json!({})).await;
    let o2 = app.create_object(json!({})).await;
    let (_, v) = poll(&app, &channel_url).await;
    let lists = v["notificationList"].as_array().unwrap();
    assert_eq!(lists.len(), 1, "{v}");
    assert_eq!(all_events(&v), [("changedObject".to_string(), o1), ("changedObject".to_string(), o2)]);
    let token = lists[0]["nmsEventList"]["restartToken"].as_str().unwrap().to_string();

    // A duration-only update leaves the delivery position (and token) where delivery put it.
    let (status, v) =
        send(&app, Method::POST, &sub_url, Some(json!({"nmsSubscriptionUpdate": {"duration": 120}}))).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["nmsSubscription"]["index"], 2);
    assert_eq!(v["nmsSubscription"]["restartToken"], token.as_str());
    let (_, v) = poll(&app, &channel_url).await;
    assert_eq!(v, json!({"notificationList": []}), "nothing delivered twice");

    // channelLifetime PUT without a value grants the default; another user cannot touch the
    // channel at all.
    let res = app
        .client
        .put(format!("{resource}/channelLifetime"))
        .json(&json!({"notificationChannelLifetime": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let id = last_segment(&resource);
    let bobs = format!("{}/notificationchannel/v1/{}/channels/{id}", app.url, enc(BOB));
    for (m, u) in [(Method::GET, bobs.clone()), (Method::DELETE, bobs.clone()), (Method::POST, format!("{bobs}/poll"))]
    {
        let res = app.req_as("bob", m, &u).json(&json!({"longPollingRequestParameters": null})).send().await.unwrap();
        assert_eq!(res.status(), 404, "{u}");
    }
    // Nor a service account another login's subscription.
    let res = app.req_as("pf", Method::GET, &sub_url).send().await.unwrap();
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn a_poll_renews_its_channels_lifetime() {
    let app = spawn_app_with(|s| s.sync.long_poll_secs = 1).await;
    let (resource, channel_url, _) = channel(&app).await;
    let res = app
        .put_json(
            &format!("{resource}/channelLifetime"),
            json!({"notificationChannelLifetime": {"channelLifetime": 5}}),
        )
        .await;
    assert_eq!(res.status(), 200);
    // Granted 5 s; a poll renews it for the granted lifetime again, so it is still alive
    // after more than 5 s of polling.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(6) {
        let (status, _) = poll(&app, &channel_url).await;
        assert_eq!(status, 200, "the channel expired while being polled");
    }
    let (status, v) = send(&app, Method::GET, &format!("{resource}/channelLifetime"), None).await;
    assert_eq!(status, 200);
    assert!(v["notificationChannelLifetime"]["channelLifetime"].as_i64().unwrap() >= 4, "{v}");
    // Unpolled, it expires.
    tokio::time::sleep(Duration::from_millis(5200)).await;
    let (status, _) = send(&app, Method::GET, &resource, None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_command_line_reset_reaches_a_waiting_poll() {
    let app = spawn_app_with(|s| s.sync.long_poll_secs = 10).await;
    let (_, channel_url, callback) = channel(&app).await;
    assert_eq!(subscribe(&app, &callback, json!({})).await.0, 201);
    let waiting = spawn_poll(&app, &channel_url);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = Instant::now();
    // Another process: the server finds its commit by watching the database, and wakes the poll.
    let out = app.cli(&["box", "reset", ALICE]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (status, v) = waiting.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(all_events(&v), [("resetBox".to_string(), String::new())]);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "answered by the re-read, not the timeout: {:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn a_huge_change_comes_in_bounded_lists() {
    let app = spawn_app_with(|s| {
        s.sync.long_poll_secs = 1;
        s.sync.list_max_events = 500;
    })
    .await;
    for _ in 0..3 {
        let objects: Vec<Value> = (0..700).map(|_| json!({"parentFolderPath": "/huge"})).collect();
        let (status, _) =
            app.post_rel("/objects/operations/bulkCreation", json!({"objectList": {"object": objects}})).await;
        assert_eq!(status, 200);
    }
    let (_, channel_url, callback) = channel(&app).await;
    assert_eq!(subscribe(&app, &callback, json!({})).await.0, 201);
    let res = app.get(&format!("{}/folders/operations/pathToId?path=%2Fhuge", app.base(ALICE))).await;
    let huge = res.json::<Value>().await.unwrap()["reference"]["resourceURL"].as_str().unwrap().to_string();
    // One request, one modseq: the folder and its 2,100 objects go.
    assert_eq!(app.delete(&huge).await.status(), 204);
    let mut seen = std::collections::BTreeSet::new();
    let mut index = 0;
    loop {
        let (_, v) = poll(&app, &channel_url).await;
        let lists = v["notificationList"].as_array().unwrap();
        if lists.is_empty() {
            break;
        }
        let list = &lists[0]["nmsEventList"];
        index += 1;
        assert_eq!(list["index"], index);
        let evs = events(&lists[0]);
        assert!(evs.len() <= 500, "a list of {} events", evs.len());
        for (_, url) in evs {
            assert!(seen.insert(url), "an item delivered twice");
        }
    }
    assert_eq!(seen.len(), 2101, "the folder and every object, once");
    assert!(index >= 5, "in {index} lists");
}

#[tokio::test]
async fn nul_in_what_a_client_names_or_sends_is_a_4xx_on_every_engine() {
    let app = spawn_app().await;
    // A path naming an object, a folder or a flag with NUL names nothing.
    for rel in ["/objects/a%00b", "/folders/a%00b", "/objects/a%00b/flags"] {
        let res = app.get(&format!("{}{rel}", app.base(ALICE))).await;
        assert_eq!(res.status(), 404, "{rel}");
    }
    let res = app.get(&format!("{}/folders/operations/pathToId?path=%2Fa%00b", app.base(ALICE))).await;
    assert_eq!(res.status(), 400);
    // A login name with NUL is no login.
    let url = format!("{}/folders/operations/pathToId", app.base(ALICE));
    let res = app.client.get(&url).basic_auth("ali\0ce", Some(PW)).send().await;
    assert_eq!(res.unwrap().status(), 401);
    // Subscriptions and channels keep the client's strings: none may hold NUL.
    let (status, v) = subscribe(
        &app,
        "http://127.0.0.1:9/x",
        json!({"callbackReference": {
        "notifyURL": "http://127.0.0.1:9/x", "callbackData": "c\u{0}b"}}),
    )
    .await;
    assert_eq!((status, message_id(&v)), (400, "SVC0002"), "{v}");
    let (status, v) = subscribe(&app, "http://127.0.0.1:9/x", json!({"clientCorrelator": "k\u{0}"})).await;
    assert_eq!((status, message_id(&v)), (400, "SVC0002"), "{v}");
    let body = json!({"notificationChannel": {"channelType": "LongPolling", "channelLifetime": 60,
        "applicationTag": "t\u{0}"}});
    let (status, v) = send(&app, Method::POST, &nc(&app), Some(body)).await;
    assert_eq!((status, message_id(&v)), (400, "SVC0002"), "{v}");
}

#[tokio::test]
async fn the_channel_list_is_the_deployed_array_or_on_request_the_nc_list() {
    let app = spawn_app().await;
    let (resource, _, _) = channel(&app).await;
    let (status, one) = send(&app, Method::GET, &resource, None).await;
    assert_eq!(status, 200);
    // The default, and `listFormat=deployed`: an array of {notificationChannel, resourceURL}.
    for url in [nc(&app), format!("{}?listFormat=deployed", nc(&app))] {
        let (status, v) = send(&app, Method::GET, &url, None).await;
        assert_eq!(status, 200);
        assert_eq!(
            v,
            json!({"notificationChannelList": [{"notificationChannel": one["notificationChannel"], "resourceURL": resource}]})
        );
    }
    // `listFormat=nc`: the NC spec's NotificationChannelList (NC 5.2.2.1, D.1).
    let (status, v) = send(&app, Method::GET, &format!("{}?listFormat=nc", nc(&app)), None).await;
    assert_eq!(status, 200);
    assert_eq!(
        v,
        json!({"notificationChannelList": {"notificationChannel": [one["notificationChannel"]], "resourceURL": nc(&app)}})
    );
    // Through acr:auth the list's URL names the user it resolved to.
    let acr = format!("{}/notificationchannel/v1/acr%3Aauth/channels?listFormat=nc", app.url);
    let (_, v) = send(&app, Method::GET, &acr, None).await;
    assert_eq!(v["notificationChannelList"]["resourceURL"], nc(&app));
    let (status, v) = send(&app, Method::GET, &format!("{}?listFormat=xml", nc(&app)), None).await;
    assert_eq!((status, message_id(&v)), (400, "SVC0003"));
}
