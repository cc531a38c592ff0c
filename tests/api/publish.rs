//! Publishing after commit: every write the domain makes wakes the box's waiters (long polls,
//! the webhook deliverer) by the time it returns, whether or not a request made it, and a
//! write that changes nothing wakes nobody.

use std::future::Future;
use std::time::Duration;

use cpm_nms::model::{BoxRow, FlagTarget, Sources};
use cpm_nms::nms::bulk::{BulkTargets, FlagOperation};
use cpm_nms::nms::subscriptions::{ChannelInput, SubscriptionInput};
use cpm_nms::nms::{Actor, ObjectInput, Parent};
use futures_util::FutureExt;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

/// Run `write` with a waiter on box `b` registered first (as a long poll registers before
/// it reads); its output, and whether the waiter had been woken when it returned.
async fn woken<T>(app: &TestApp, b: &BoxRow, write: impl Future<Output = T>) -> (T, bool) {
    let signal = app.nms.hub().box_signal(b.id);
    let mut waiter = std::pin::pin!(signal.notified());
    waiter.as_mut().enable();
    let out = write.await;
    (out, waiter.now_or_never().is_some())
}

/// Run `write`, which changes nothing: it must commit nothing (the box's modseq stays where
/// it was) and wake nobody. Waiters may also wake for reasons of their own (the watcher of
/// other processes' commits wakes every waiter when it cannot read the database), so a wake
/// fails the test only if running the same write again wakes again.
async fn quiet<T, F: Future<Output = T>>(app: &TestApp, b: &BoxRow, write: impl Fn() -> F, what: &str) -> T {
    let before = app.nms.store().box_modseqs(&[b.id]).await.unwrap();
    let (mut out, mut woke) = woken(app, b, write()).await;
    if woke {
        (out, woke) = woken(app, b, write()).await;
    }
    assert!(!woke, "{what}: woke its waiters");
    assert_eq!(app.nms.store().box_modseqs(&[b.id]).await.unwrap(), before, "{what}: committed");
    out
}

async fn alices_box(app: &TestApp) -> BoxRow {
    app.nms.find_box("base", ALICE).await.unwrap().unwrap()
}

fn input(path: &str) -> ObjectInput {
    ObjectInput {
        parent: Parent::Path(path.into()),
        attributes: Vec::new(),
        flags: Vec::new(),
        correlation_id: None,
        correlation_tag: None,
    }
}

#[tokio::test]
async fn every_write_through_the_domain_wakes_the_boxs_waiters_as_it_returns() {
    let app = spawn_app().await;
    let nms = &app.nms;
    let b = alices_box(&app).await;
    let svc = Actor::Service;

    let (work, woke) =
        woken(&app, &b, nms.create_folder(&b, svc, Parent::Path("/".into()), Some("Work".into()), vec![])).await;
    let work = work.unwrap();
    assert!(woke, "a folder made");
    let (o, woke) = woken(&app, &b, nms.create_object(&b, svc, input("/Work"), nms.begin_deposit())).await;
    let o = o.unwrap();
    assert!(woke, "an object deposited");
    let target = FlagTarget::Object(&o.public_id);
    let (_, woke) = woken(&app, &b, nms.change_flag(&b, target, "\\Seen", true)).await;
    assert!(woke, "a flag set");
    quiet(&app, &b, || nms.change_flag(&b, target, "\\Seen", true), "a flag set already").await.unwrap();
    let same = ["\\seen".to_string()];
    quiet(&app, &b, || nms.set_flags(&b, target, &same), "the same flags").await.unwrap();
    let (_, woke) = woken(&app, &b, nms.set_flags(&b, target, &["$Keep".into()])).await;
    assert!(woke, "other flags");
    let named = BulkTargets::Objects(vec![o.public_id.clone()]);
    let keep = ["$Keep".to_string()];
    let unchanged = || nms.bulk_update(&b, &named, FlagOperation::AddFlag, &keep);
    quiet(&app, &b, unchanged, "a bulk update changing nothing").await.unwrap();
    quiet(&app, &b, || nms.rename_folder(&b, svc, &work.public_id, "Work"), "the same name").await.unwrap();
    let (_, woke) = woken(&app, &b, nms.rename_folder(&b, svc, &work.public_id, "Job")).await;
    assert!(woke, "a rename");

    let root = nms.root_folder(&b).await.unwrap();
    let objects = Sources { folders: vec![], objects: vec![o.public_id.clone()] };
    let (copies, woke) = woken(&app, &b, nms.copy_to_folder(&b, svc, &root.public_id, &objects)).await;
    assert!(woke, "a copy: {copies:?}");
    let (_, woke) = woken(&app, &b, nms.move_to_folder(&b, svc, &root.public_id, &objects)).await;
    assert!(woke, "a move");
    quiet(&app, &b, || nms.move_to_folder(&b, svc, &root.public_id, &objects), "a move to where it is").await.unwrap();
    let gone = quiet(&app, &b, || nms.delete_object(&b, "no-such"), "a deletion of nothing").await;
    assert!(gone.is_err(), "a deletion of nothing");
    let (_, woke) = woken(&app, &b, nms.bulk_delete(&b, &named)).await;
    assert!(woke, "a bulk deletion");
    let (_, woke) = woken(&app, &b, nms.delete_folder(&b, svc, &work.public_id)).await;
    assert!(woke, "a folder deleted");

    // A new subscription, and one restarted from a token, may have changes due at once.
    let channel = ChannelInput { channel_type: "LongPolling".into(), ..Default::default() };
    let channel = nms.create_channel("alice", ALICE, channel).await.unwrap();
    let token = nms.current_token(&b).await.unwrap();
    let sub = SubscriptionInput {
        notify_url: "callback".into(),
        channel: Some(channel.public_id.clone()),
        restart_token: Some(token.clone()),
        ..Default::default()
    };
    let (sub, woke) = woken(&app, &b, nms.create_subscription(&b, "alice", sub)).await;
    let sub = sub.unwrap();
    assert!(woke, "a subscription made");
    let longer = || nms.update_subscription(&b, "alice", &sub.public_id, Some(600), None);
    quiet(&app, &b, longer, "a new duration").await.unwrap();
    let (_, woke) = woken(&app, &b, nms.update_subscription(&b, "alice", &sub.public_id, None, Some(token))).await;
    assert!(woke, "a new restart point");

    let (_, woke) = woken(&app, &b, nms.reset_box(&b)).await;
    assert!(woke, "a reset");
}

#[tokio::test]
async fn a_request_that_changes_nothing_wakes_nobody() {
    let app = spawn_app().await;
    let b = alices_box(&app).await;
    let o = app.create_object(json!({"parentFolderPath": "/x"})).await;
    let seen = format!("{o}/flags/%5CSeen");
    let (res, woke) = woken(&app, &b, app.req(Method::PUT, &seen).send()).await;
    assert_eq!(res.unwrap().status(), 201);
    assert!(woke, "the flag was set");
    let again = quiet(&app, &b, || app.req(Method::PUT, &seen).send(), "the flag was set already").await;
    assert!(again.unwrap().status().is_success());
}

#[tokio::test]
async fn an_expiry_answers_a_waiting_long_poll_with_no_request_involved() {
    let app = spawn_app_with(|s| {
        s.sync.retention.insert("base".into(), cpm_nms::config::RetentionPolicy { max_age_secs: 0, max_objects: 1 });
    })
    .await;
    let b = alices_box(&app).await;
    let nc = format!("{}/notificationchannel/v1/{}/channels", app.url, enc(ALICE));
    let res = app.post_json(&nc, json!({"notificationChannel": {"channelType": "LongPolling"}})).await;
    let channel: Value = res.json().await.unwrap();
    let channel = &channel["notificationChannel"];
    let channel_url = channel["channelData"]["channelURL"].as_str().unwrap().to_string();
    let callback = channel["callbackURL"].as_str().unwrap();
    let subscribe = json!({"nmsSubscription": {"callbackReference": {"notifyURL": callback}, "duration": 600}});
    let res = app.post_json(&format!("{}/subscriptions", app.base(ALICE)), subscribe).await;
    assert_eq!(res.status(), 201);
    let old = app.create_object(json!({"parentFolderPath": "/x"})).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    app.create_object(json!({"parentFolderPath": "/x"})).await;
    let poll = json!({"longPollingRequestParameters": null});
    let drained: Value = app.post_json(&channel_url, poll.clone()).await.json().await.unwrap();
    assert_eq!(drained["notificationList"].as_array().unwrap().len(), 1, "the deposits: {drained}");

    // Nothing pending now: a poll waits (up to the default 30 s) until the expiry.
    let waiting = {
        let (client, url, poll) = (app.client.clone(), channel_url.clone(), poll.clone());
        tokio::spawn(async move {
            let res = client.post(&url).basic_auth("alice", Some(PW)).json(&poll).send().await.unwrap();
            res.json::<Value>().await.unwrap()
        })
    };
    let (expired, woke) = woken(&app, &b, app.nms.expire()).await;
    assert_eq!(expired.unwrap(), 1, "the older deposit is beyond the one kept");
    assert!(woke, "the expiry published its commit");
    let v = waiting.await.unwrap();
    let events = &v["notificationList"][0]["nmsEventList"]["nmsEvent"];
    assert_eq!(events[0]["expiredObject"]["resourceURL"], old.as_str(), "{v}");
}
