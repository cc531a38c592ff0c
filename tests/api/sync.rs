//! Strict synchronization state: restart tokens and replay (table-driven over a sequence of
//! changes), tombstone retention, box reset (also by the command line while the server runs).

use std::collections::{BTreeMap, BTreeSet};

use cpm_nms::model::{BoxRow, Change};
use cpm_nms::nms::sync::{RestartPoint, SyncEvent};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

/// What a client mirrors of a box: objects (parent, flags, lastModSeq) and folders
/// (parent, name, lastModSeq), by id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Mirror {
    objects: BTreeMap<String, (String, BTreeSet<String>, i64)>,
    folders: BTreeMap<String, (Option<String>, String, i64)>,
}

impl Mirror {
    fn apply(&mut self, event: &SyncEvent) {
        match event {
            SyncEvent::ResetBox => *self = Mirror::default(),
            SyncEvent::Change(Change::Object(o)) => {
                let flags = o.flags.iter().map(|f| f.to_ascii_lowercase()).collect();
                self.objects.insert(o.public_id.clone(), (o.folder_public_id.clone(), flags, o.last_mod_seq));
            }
            SyncEvent::Change(Change::Folder(f)) => {
                self.folders.insert(f.public_id.clone(), (f.parent_public_id.clone(), f.name.clone(), f.last_mod_seq));
            }
            SyncEvent::Change(Change::Gone(t)) => {
                if t.kind == "object" {
                    self.objects.remove(&t.public_id);
                } else {
                    self.folders.remove(&t.public_id);
                }
            }
        }
    }
}

/// The box as a full search sees it (first-time sync).
async fn snapshot(app: &TestApp) -> Mirror {
    let mut m = Mirror::default();
    let (_, v) = app.post_rel("/objects/operations/search", json!({"selectionCriteria": {"maxEntries": 1000}})).await;
    for o in v["objectList"]["object"].as_array().unwrap() {
        let flags =
            o["flags"]["flag"].as_array().unwrap().iter().map(|f| f.as_str().unwrap().to_ascii_lowercase()).collect();
        m.objects.insert(
            last_segment(o["resourceURL"].as_str().unwrap()),
            (last_segment(o["parentFolder"].as_str().unwrap()), flags, o["lastModSeq"].as_i64().unwrap()),
        );
    }
    let (_, v) = app
        .post_rel("/folders/operations/search", json!({"selectionCriteria": {"maxEntries": 1000, "searchCriteria": {"criterion": [{"type": "Date", "value": "minDate=2000-01-01T00:00:00Z"}]}}}))
        .await;
    for f in v["folderList"]["folder"].as_array().unwrap() {
        m.folders.insert(
            last_segment(f["resourceURL"].as_str().unwrap()),
            (
                f["parentFolder"].as_str().map(last_segment),
                f["name"].as_str().unwrap().to_string(),
                f["lastModSeq"].as_i64().unwrap(),
            ),
        );
    }
    m
}

async fn the_box(app: &TestApp) -> BoxRow {
    app.nms.find_box("base", ALICE).await.unwrap().unwrap()
}

/// Replay from `token` to the end, `limit` at a time: the events and the final token.
async fn replay_all(app: &TestApp, token: &str, limit: u32) -> (Vec<SyncEvent>, String) {
    let b = the_box(app).await;
    let mut events = Vec::new();
    let mut token = token.to_string();
    for _ in 0..1000 {
        let from = app.nms.open_restart_token(&b, &token).unwrap();
        let page = app.nms.replay(&b, from, limit).await.unwrap();
        events.extend(page.events);
        token = page.token;
        if !page.more {
            return (events, token);
        }
    }
    panic!("replay did not end");
}

/// The ids (and whether gone) of a replay's events.
fn ids(events: &[SyncEvent]) -> BTreeSet<(String, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            SyncEvent::Change(Change::Object(o)) => Some((o.public_id.clone(), false)),
            SyncEvent::Change(Change::Folder(f)) => Some((f.public_id.clone(), false)),
            SyncEvent::Change(Change::Gone(t)) => Some((t.public_id.clone(), true)),
            SyncEvent::ResetBox => None,
        })
        .collect()
}

fn id(url: &str) -> String {
    last_segment(url)
}

#[tokio::test]
async fn every_token_replays_exactly_what_changed_since_and_converges() {
    // Expiry keeps the newest object only, when it runs (the step below runs it).
    let app = spawn_app_with(|s| {
        s.sync.retention.insert("base".into(), cpm_nms::config::RetentionPolicy { max_age_secs: 0, max_objects: 1 });
    })
    .await;
    let base = app.base(ALICE);
    let root = app.root().await;
    // (token before the step, the mirror then, the ids the step touched)
    let mut history: Vec<(String, Mirror, Vec<String>)> = Vec::new();
    macro_rules! step {
        ($touched:expr, $body:expr) => {{
            let token = app.nms.current_token(&the_box(&app).await).await.unwrap();
            let before = snapshot(&app).await;
            let out = $body;
            let touched: Vec<String> = $touched(&out);
            history.push((token, before, touched));
            out
        }};
    }

    let a = step!(|u: &String| vec![id(u)], app.create_folder(json!({"parentFolder": root, "name": "a"})).await);
    let b = step!(|u: &String| vec![id(u)], app.create_folder(json!({"parentFolder": a, "name": "b"})).await);
    let o1 =
        step!(|u: &String| vec![id(u)], app.create_object(json!({"parentFolder": a, "correlationId": "c1"})).await);
    let o2 = step!(|u: &String| vec![id(u)], app.create_object(json!({"parentFolder": b})).await);
    let o3 = step!(|u: &String| vec![id(u)], app.create_object(json!({})).await);
    step!(|_: &()| vec![id(&o1)], {
        assert_eq!(app.req(Method::PUT, &format!("{o1}/flags/%5CSeen")).send().await.unwrap().status(), 201);
    });
    step!(|_: &()| Vec::<String>::new(), {
        // Already set: no change at all.
        assert_eq!(app.req(Method::PUT, &format!("{o1}/flags/%5CSeen")).send().await.unwrap().status(), 204);
    });
    step!(|_: &()| vec![id(&o2)], {
        let (s, _) = app.post_rel("/folders/operations/moveToFolder", json!({"targetSourceRef": {"targetRef": {"resourceURL": a}, "sourceRefs": {"objects": {"objectReference": [{"resourceURL": o2}]}}}})).await;
        assert_eq!(s, 200);
    });
    step!(|_: &()| vec![id(&b)], {
        assert_eq!(app.put_json(&format!("{b}/folderName"), json!({"name": "b2"})).await.status(), 200);
    });
    step!(|_: &()| vec![id(&b)], {
        let (s, _) = app.post_rel("/folders/operations/moveToFolder", json!({"targetSourceRef": {"targetRef": {"resourceURL": root}, "sourceRefs": {"folders": {"folderReference": [{"resourceURL": b}]}}}})).await;
        assert_eq!(s, 200);
    });
    step!(|_: &()| vec![id(&o3)], {
        assert_eq!(app.delete(&o3).await.status(), 204);
    });
    let o4 = step!(|u: &String| vec![id(u)], app.create_object(json!({"parentFolder": b})).await);
    // A recursive delete: the folder and everything in it.
    step!(|_: &()| vec![id(&a), id(&o1), id(&o2)], {
        assert_eq!(app.delete(&a).await.status(), 204);
    });
    step!(|_: &()| vec![id(&o4)], {
        let (s, _) = app.post_rel("/objects/operations/bulkUpdate", json!({"bulkUpdate": {"operation": "AddFlag", "flags": {"flag": ["\\Flagged", "\\Seen"]}, "objects": {"objectReference": [{"resourceURL": o4}]}}})).await;
        assert_eq!(s, 200);
    });
    let copied = step!(
        |v: &Value| vec![id(v["bulkResponseList"]["response"][0]["success"]["resourceURL"].as_str().unwrap())],
        {
            let (s, v) = app.post_rel("/folders/operations/copyToFolder", json!({"targetSourceRef": {"targetRef": {"resourceURL": root}, "sourceRefs": {"objects": {"objectReference": [{"resourceURL": o4}]}}}})).await;
            assert_eq!(s, 200);
            v
        }
    );
    // Expiry: o4 goes (the copy is the newest).
    step!(|_: &()| vec![id(&o4)], {
        assert_eq!(app.nms.expire().await.unwrap(), 1);
    });
    let _ = (copied, base);

    let final_state = snapshot(&app).await;
    let final_token = app.nms.current_token(&the_box(&app).await).await.unwrap();
    for (i, (token, before, _)) in history.iter().enumerate() {
        for limit in [1, 2, 100] {
            let (events, after) = replay_all(&app, token, limit).await;
            // Exactly the items touched after this point, each once, as they stand now.
            let mut want: BTreeSet<(String, bool)> = BTreeSet::new();
            for (_, _, touched) in &history[i..] {
                for t in touched {
                    let alive = final_state.objects.contains_key(t) || final_state.folders.contains_key(t);
                    want.insert((t.clone(), !alive));
                }
            }
            assert_eq!(ids(&events), want, "step {i}, limit {limit}");
            assert_eq!(events.len(), want.len(), "step {i}: each item once");
            // In modseq order.
            let seqs: Vec<i64> = events
                .iter()
                .map(|e| match e {
                    SyncEvent::Change(c) => c.last_mod_seq(),
                    SyncEvent::ResetBox => 0,
                })
                .collect();
            assert!(seqs.windows(2).all(|w| w[0] <= w[1]), "{seqs:?}");
            // A client that held the box as it was at this point reaches the server's state.
            let mut m = before.clone();
            for e in &events {
                m.apply(e);
            }
            assert_eq!(m, final_state, "step {i}, limit {limit}");
            assert_eq!(after, final_token, "the replay ends at the box's current token");
        }
    }
    // The current token replays nothing.
    let (events, _) = replay_all(&app, &final_token, 10).await;
    assert!(events.is_empty());
    // Deletions carry the correlation ids.
    let (events, _) = replay_all(&app, &history[0].0, 100).await;
    let gone_o1 = events.iter().find_map(|e| match e {
        SyncEvent::Change(Change::Gone(t)) if t.public_id == id(&o1) => Some(t.clone()),
        _ => None,
    });
    assert_eq!(gone_o1.unwrap().correlation_id.as_deref(), Some("c1"));
    let expired = events
        .iter()
        .any(|e| matches!(e, SyncEvent::Change(Change::Gone(t)) if t.public_id == id(&o4) && t.reason == "expired"));
    assert!(expired, "o4 replays as expired");

    // After a reset, every earlier token replays as exactly one resetBox.
    app.nms.reset_box(&the_box(&app).await).await.unwrap();
    for token in history.iter().map(|h| &h.0).chain([&final_token]) {
        let (events, after) = replay_all(&app, token, 100).await;
        assert!(matches!(events.as_slice(), [SyncEvent::ResetBox]), "{events:?}");
        assert_eq!(after, app.nms.current_token(&the_box(&app).await).await.unwrap());
    }
}

#[tokio::test]
async fn stale_forged_and_too_old_tokens() {
    let app = spawn_app_with(|s| s.sync.tombstone_max_per_box = 1).await;
    let b = the_box(&app).await;
    let t0 = app.nms.current_token(&b).await.unwrap();
    let x = app.create_object(json!({})).await;
    let y = app.create_object(json!({})).await;
    let t1 = app.nms.current_token(&b).await.unwrap();
    app.delete(&x).await;
    app.delete(&y).await;

    // Forged, or another box's token: refused.
    let mut forged = t1.clone().into_bytes();
    let last = forged.len() - 1;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    for bad in [forged.as_str(), "garbage", ""] {
        let e = app.nms.open_restart_token(&b, bad).unwrap_err();
        assert!(matches!(e, cpm_nms::error::Error::InvalidInput { .. }), "{e:?}");
    }
    let bob = app.nms.find_box("base", BOB).await.unwrap().unwrap();
    assert!(app.nms.open_restart_token(&bob, &t1).is_err(), "bound to its box");

    // Pruning to one tombstone per box raises the replay floor past t0 and t1.
    let (events, _) = replay_all(&app, &t1, 10).await;
    assert_eq!(ids(&events), [(id(&x), true), (id(&y), true)].into_iter().collect());
    assert_eq!(app.nms.prune_tombstones().await.unwrap(), 1);
    for token in [&t0, &t1] {
        let (events, after) = replay_all(&app, token, 10).await;
        assert!(matches!(events.as_slice(), [SyncEvent::ResetBox]), "exactly one resetBox: {events:?}");
        // Replaying from the token the reset answered continues normally.
        let z = app.create_object(json!({})).await;
        let (events, _) = replay_all(&app, &after, 10).await;
        assert_eq!(ids(&events), [(id(&z), false)].into_iter().collect());
    }
    // A point from the future (not a token this box issued) cannot be replayed either.
    let page = app.nms.replay(&b, RestartPoint::after(b.validity, i64::MAX), 10).await.unwrap();
    assert!(matches!(page.events.as_slice(), [SyncEvent::ResetBox]));
}

#[tokio::test]
async fn box_reset_by_the_command_line_while_the_server_runs() {
    let app = spawn_app().await;
    let b = the_box(&app).await;
    let (ct, body) = form()
        .root_fields(&json!({"parentFolderPath": "/keep/me"}))
        .part(
            &[("Content-Disposition", "form-data; name=\"attachments\""), ("Content-Type", "image/png")],
            &vec![1u8; 20_000],
        )
        .finish("multipart/form-data");
    let v: Value = app.deposit(&ct, body).await.json().await.unwrap();
    let obj = v["reference"]["resourceURL"].as_str().unwrap().to_string();
    let before = app.nms.current_token(&b).await.unwrap();
    let root = app.root().await;

    let out = app.cli(&["box", "reset", ALICE]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("reset"));

    // The running server sees the empty box: the root (same id) and nothing else.
    assert_eq!(app.get(&obj).await.status(), 404);
    assert_eq!(app.root().await, root);
    let m = snapshot(&app).await;
    assert!(m.objects.is_empty());
    assert_eq!(m.folders.keys().cloned().collect::<Vec<_>>(), vec![id(&root)]);
    let res = app.get(&format!("{}/folders/operations/pathToId?path=%2Fkeep", app.base(ALICE))).await;
    assert_eq!(res.status(), 404);
    assert!(app.blob_files().is_empty(), "the box's blobs went with it");
    // Every earlier token replays as exactly one resetBox; the new token replays normally.
    let (events, after) = replay_all(&app, &before, 10).await;
    assert!(matches!(events.as_slice(), [SyncEvent::ResetBox]), "{events:?}");
    let fresh = app.create_object(json!({})).await;
    let (events, _) = replay_all(&app, &after, 10).await;
    assert_eq!(ids(&events), [(id(&fresh), false)].into_iter().collect());
    // Other boxes are untouched; an unknown box is an error.
    let out = app.cli(&["box", "reset", "tel:+999"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no box"));
}

#[tokio::test]
async fn expiry_deletes_past_the_policy_and_replays_as_expired() {
    let app = spawn_app_with(|s| {
        s.sync.retention.insert("base".into(), cpm_nms::config::RetentionPolicy { max_age_secs: 0, max_objects: 2 });
    })
    .await;
    let b = the_box(&app).await;
    let mut made = Vec::new();
    for i in 0..4 {
        made.push(app.create_object(json!({"correlationId": format!("c{i}")})).await);
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    // Bob's box is in the same store: the policy applies per box.
    let res = app
        .req_as("bob", Method::POST, &format!("{}/objects", app.base(BOB)))
        .json(&json!({"object": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let token = app.nms.current_token(&b).await.unwrap();
    assert_eq!(app.nms.expire().await.unwrap(), 2, "alice's two oldest; bob has one");
    assert_eq!(app.get(&made[0]).await.status(), 404);
    assert_eq!(app.get(&made[1]).await.status(), 404);
    assert_eq!(app.get(&made[2]).await.status(), 200);
    assert_eq!(app.get(&made[3]).await.status(), 200);
    let (events, _) = replay_all(&app, &token, 10).await;
    let gone: Vec<(String, String, Option<String>)> = events
        .iter()
        .filter_map(|e| match e {
            SyncEvent::Change(Change::Gone(t)) => {
                Some((t.public_id.clone(), t.reason.clone(), t.correlation_id.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        gone,
        vec![(id(&made[0]), "expired".into(), Some("c0".into())), (id(&made[1]), "expired".into(), Some("c1".into()))]
    );
    assert_eq!(events.len(), 2);
    // Nothing more to expire: the box modseq does not move.
    let before = app.nms.current_token(&b).await.unwrap();
    assert_eq!(app.nms.expire().await.unwrap(), 0);
    assert_eq!(app.nms.current_token(&b).await.unwrap(), before);
}

#[tokio::test]
async fn expiry_by_age() {
    let app = spawn_app_with(|s| {
        s.sync.retention.insert("base".into(), cpm_nms::config::RetentionPolicy { max_age_secs: 1, max_objects: 0 });
    })
    .await;
    let old = app.create_object(json!({})).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let fresh = app.create_object(json!({})).await;
    assert_eq!(app.nms.expire().await.unwrap(), 1);
    assert_eq!(app.get(&old).await.status(), 404);
    assert_eq!(app.get(&fresh).await.status(), 200);
}

#[tokio::test]
async fn a_replay_through_a_very_large_change_group() {
    let app = spawn_app().await;
    let b = the_box(&app).await;
    let objects: Vec<Value> = (0..1000).map(|_| json!({"parentFolderPath": "/big"})).collect();
    let (status, _) =
        app.post_rel("/objects/operations/bulkCreation", json!({"objectList": {"object": objects}})).await;
    assert_eq!(status, 200);
    let token = app.nms.current_token(&b).await.unwrap();
    // One copy: 1001 items with one modseq, more than a loader batch.
    let big = snapshot(&app).await.folders.into_iter().find(|(_, (_, name, _))| name == "big").unwrap().0;
    let root = app.root().await;
    let big_url = format!("{}/folders/{big}", app.base(ALICE));
    let dst = app.create_folder(json!({"parentFolder": root, "name": "dst"})).await;
    let (status, _) = app
        .post_rel("/folders/operations/copyToFolder", json!({"targetSourceRef": {"targetRef": {"resourceURL": dst}, "sourceRefs": {"folders": {"folderReference": [{"resourceURL": big_url}]}}}}))
        .await;
    assert_eq!(status, 200);
    let (events, _) = replay_all(&app, &token, 10).await;
    assert_eq!(events.len(), 1 + 1 + 1000, "the target, the copied folder and its objects");

    // The copy's group (1001 items) is far larger than a page of 10: it comes in slices of
    // 10, each ending with a token inside the group, from which the rest replays exactly.
    let mut from = app.nms.open_restart_token(&b, &token).unwrap();
    let mut pages = Vec::new();
    loop {
        let page = app.nms.replay(&b, from, 10).await.unwrap();
        assert!(page.events.len() <= 10 || pages.is_empty(), "a slice of at most 10: {}", page.events.len());
        pages.push((page.token.clone(), page.events.len()));
        if !page.more {
            break;
        }
        from = app.nms.open_restart_token(&b, &page.token).unwrap();
    }
    assert!(pages.len() > 100, "{} pages", pages.len());
    let (mid_token, _) = &pages[50];
    let mid = app.nms.open_restart_token(&b, mid_token).unwrap();
    assert!(mid.within.is_some(), "a token inside the group");
    let (rest, _) = replay_all(&app, mid_token, 10).await;
    let delivered: usize = pages[..=50].iter().map(|(_, n)| n).sum();
    assert_eq!(delivered + rest.len(), 1002, "nothing lost, nothing twice");
    // A change to an item of the rest after the token: delivered once, as it stands.
    let (all, _) = replay_all(&app, &token, 1000).await;
    let last_object = all
        .iter()
        .rev()
        .find_map(|e| match e {
            SyncEvent::Change(Change::Object(o)) => Some(o.public_id.clone()),
            _ => None,
        })
        .unwrap();
    let url = format!("{}/objects/{last_object}", app.base(ALICE));
    assert_eq!(app.req(Method::PUT, &format!("{url}/flags/%5CSeen")).send().await.unwrap().status(), 201);
    let (rest, _) = replay_all(&app, mid_token, 10).await;
    let n =
        rest.iter().filter(|e| matches!(e, SyncEvent::Change(Change::Object(o)) if o.public_id == last_object)).count();
    assert_eq!(n, 1);
    assert_eq!(delivered + rest.len(), 1002, "the flagged object moved to a later group, still once");
}
