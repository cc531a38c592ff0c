//! The black-box conformance suite (`conformance/`) against the embedded server: every SCR
//! item it knows must pass, and it must leave the box as it found it.

use std::time::Duration;

use nms_conformance::{CASES, Format, Options, run, select};
use serde_json::Value;

use crate::helpers::{ALICE, PW, TestApp, enc, spawn_app, spawn_app_with};

/// Run as alice on her box, in JSON.
fn options(app: &TestApp, password: &str) -> Options {
    Options {
        bearer: None,
        base_url: app.url.clone(),
        user: "alice".into(),
        password: password.into(),
        box_id: ALICE.into(),
        store: "base".into(),
        timeout: Duration::from_secs(60),
        channel_root: None,
        format: Format::Json,
    }
}

#[tokio::test]
async fn every_scr_item_passes_against_the_embedded_server() {
    every_item_passes(Format::Json).await;
}

/// The same run with every document in the XML binding.
#[tokio::test]
async fn every_scr_item_passes_in_xml() {
    every_item_passes(Format::Xml).await;
}

async fn every_item_passes(format: Format) {
    let app = spawn_app().await;
    let root = app.root().await;
    let opts = Options { format, ..options(&app, PW) };
    let report = run(&opts, &select(&[]), std::future::pending(), |o| println!("{}", o.line())).await;
    println!("{}", report.summary());
    assert_eq!(report.setup_error, None);
    assert_eq!(report.cleanup_error, None);
    assert!(!report.interrupted);
    assert_eq!(report.outcomes.len(), CASES.len());
    let failed: Vec<String> = report.outcomes.iter().filter(|o| o.result.is_err()).map(|o| o.line()).collect();
    assert!(failed.is_empty(), "failed items:\n{}", failed.join("\n"));

    // The run folder is gone: the root holds no subfolder and no object again.
    let body: Value = app.get(&format!("{root}?listFilter=All")).await.json().await.unwrap();
    assert_eq!(body["folder"]["subFolders"]["folderReference"], serde_json::json!([]), "left behind: {body}");
    assert_eq!(body["folder"]["objects"]["objectReference"], serde_json::json!([]), "left behind: {body}");
    // So are the subscriptions and notification channels of the subscription items.
    let body: Value = app.get(&format!("{}/subscriptions", app.base(ALICE))).await.json().await.unwrap();
    assert_eq!(body["nmsSubscriptionList"]["subscription"], serde_json::json!([]), "left behind: {body}");
    let channels = format!("{}/notificationchannel/v1/{}/channels", app.url, enc(ALICE));
    let body: Value = app.get(&channels).await.json().await.unwrap();
    assert_eq!(body["notificationChannelList"], serde_json::json!([]), "left behind: {body}");
}

#[tokio::test]
async fn a_broken_server_fails_the_run() {
    let app = spawn_app().await;
    // Wrong password: the setup cannot discover the root, no item passes, the run fails.
    let opts = options(&app, "wrong");
    let report = run(&opts, &select(&["FLAGS".into()]), std::future::pending(), |_| {}).await;
    assert!(report.setup_error.as_deref().is_some_and(|e| e.contains("401")), "{:?}", report.setup_error);
    assert!(!report.outcomes.is_empty() && report.passed() == 0);
    assert!(!report.success());
}

#[tokio::test]
async fn a_deviating_server_fails_exactly_the_item_it_breaks() {
    // With the root-rename policy off, renaming the root succeeds instead of 403 POL1030:
    // REST-NMS-FOLDERNAME-S-001-M must catch it, and the other folder-name items still pass.
    let app = spawn_app_with(|s| s.nms.forbid_root_rename = false).await;
    let opts = options(&app, PW);
    let report = run(&opts, &select(&["FOLDERNAME".into()]), std::future::pending(), |_| {}).await;
    let failed: Vec<&str> = report.outcomes.iter().filter(|o| o.result.is_err()).map(|o| o.id).collect();
    assert_eq!(failed, ["REST-NMS-FOLDERNAME-S-001-M"], "{report:?}");
    assert_eq!(report.outcomes.len(), 3);
    assert!(!report.success());
    let reason = report.outcomes[0].result.as_ref().unwrap_err();
    assert!(reason.contains("POL1030") || reason.contains("403"), "{reason}");
}
