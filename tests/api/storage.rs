//! Storage rules: modseq stamping, tombstones, blob sharing, release and sweep.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

async fn big_deposit(app: &TestApp, content: &[u8], path: &str) -> String {
    let (ct, body) = form()
        .root_fields(&json!({"parentFolderPath": path, "correlationId": "cid-1"}))
        .part(
            &[("Content-Disposition", "form-data; name=\"attachments\""), ("Content-Type", "application/octet-stream")],
            content,
        )
        .finish("multipart/form-data");
    let res = app.deposit(&ct, body).await;
    assert_eq!(res.status(), 201);
    res.json::<Value>().await.expect("json")["reference"]["resourceURL"].as_str().expect("u").to_string()
}

#[tokio::test]
async fn small_parts_stay_inline_large_parts_become_shared_blobs() {
    let app = spawn_app().await;
    let small = vec![3u8; 8 * 1024];
    big_deposit(&app, &small, "/x").await;
    assert!(app.blob_files().is_empty(), "a part up to 8 KiB is inline");
    let large = vec![5u8; 8 * 1024 + 1];
    let a = big_deposit(&app, &large, "/x").await;
    let b = big_deposit(&app, &large, "/y").await;
    assert_eq!(app.blob_files().len(), 1, "same content, one blob: {:?}", app.blob_files());
    assert_eq!(app.delete(&a).await.status(), 204);
    assert_eq!(app.blob_files().len(), 1, "still referenced by the other object");
    let part: Value = app.get(&b).await.json().await.expect("json");
    let href = part["object"]["payloadPart"][0]["href"].as_str().expect("href").to_string();
    assert_eq!(app.get(&href).await.bytes().await.expect("b").as_ref(), large.as_slice());
    assert_eq!(app.delete(&b).await.status(), 204);
    assert!(app.blob_files().is_empty(), "last reference gone, blob gone: {:?}", app.blob_files());
}

#[tokio::test]
async fn folder_deletion_releases_blobs() {
    let app = spawn_app().await;
    big_deposit(&app, &vec![9u8; 20_000], "/del/me").await;
    big_deposit(&app, &vec![8u8; 20_000], "/del").await;
    assert_eq!(app.blob_files().len(), 2);
    let v: Value = app
        .get(&format!("{}/folders/operations/pathToId?path=%2Fdel", app.base(ALICE)))
        .await
        .json()
        .await
        .expect("json");
    app.delete(v["reference"]["resourceURL"].as_str().expect("u")).await;
    assert!(app.blob_files().is_empty());
}

#[tokio::test]
async fn mutations_stamp_modseq_and_deletions_leave_tombstones() {
    let app = spawn_app().await;
    let b = app.nms.find_box("base", ALICE).await.expect("db").expect("box");
    let url = app.create_object(json!({"correlationId": "mid-1", "correlationTag": "tag-1"})).await;
    let o: Value = app.get(&url).await.json().await.expect("json");
    let created = o["object"]["lastModSeq"].as_i64().expect("seq");
    assert!(created > b.modseq);
    assert_eq!(app.delete(&url).await.status(), 204);
    let folder = app.create_folder(json!({"parentFolderPath": "/", "name": "gone"})).await;
    app.delete(&folder).await;
    let t = app.nms.store().tombstones_since(&b, created).await.expect("tombstones");
    assert_eq!(t.len(), 2);
    assert_eq!(t[0].kind, "object");
    assert_eq!(t[0].public_id, last_segment(&url));
    assert_eq!(t[0].correlation_id.as_deref(), Some("mid-1"));
    assert_eq!(t[0].correlation_tag.as_deref(), Some("tag-1"));
    assert!(t[0].last_mod_seq > created);
    assert_eq!(t[1].kind, "folder");
    assert!(t[1].last_mod_seq > t[0].last_mod_seq);
    let after = app.nms.find_box("base", ALICE).await.expect("db").expect("box");
    assert_eq!(after.modseq, t[1].last_mod_seq, "the box modseq is the last stamp");
}

#[tokio::test]
async fn sweep_removes_orphans_but_not_referenced_blobs() {
    let app = spawn_app().await;
    let url = big_deposit(&app, &vec![1u8; 20_000], "/s").await;
    let orphan_dir = app.data.path().join("blobs/blobs/ab");
    std::fs::create_dir_all(&orphan_dir).expect("mkdir");
    std::fs::write(orphan_dir.join("ab00"), b"orphan").expect("write");
    std::fs::create_dir_all(app.data.path().join("blobs/tmp")).expect("mkdir");
    std::fs::write(app.data.path().join("blobs/tmp/stale"), b"half an upload").expect("write");
    assert_eq!(app.blob_files().len(), 3);
    // Within the grace period nothing is touched.
    let r = app.nms.blobs().sweep(Duration::from_secs(3600)).await.expect("sweep");
    assert_eq!((r.blobs_deleted, r.temporaries_deleted), (0, 0));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = app.nms.blobs().sweep(Duration::from_secs(1)).await.expect("sweep");
    assert_eq!((r.blobs_deleted, r.temporaries_deleted), (1, 1));
    assert_eq!(app.blob_files().len(), 1);
    let o: Value = app.get(&url).await.json().await.expect("json");
    let href = o["object"]["payloadPart"][0]["href"].as_str().expect("href").to_string();
    assert_eq!(app.get(&href).await.bytes().await.expect("b").len(), 20_000);
}

#[tokio::test]
async fn sweep_drops_pins_and_deletion_marks_left_by_a_crash() {
    let app = spawn_app().await;
    // Two unreferenced blobs: one still pinned by an upload that never finished, one marked
    // as being deleted by a collector that died mid-way.
    let dir = app.data.path().join("blobs/blobs/cd");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("cd01"), b"pinned by a crashed upload").expect("write");
    std::fs::write(dir.join("cd02"), b"marked by a crashed collector").expect("write");
    let long_ago = 1_000;
    assert!(app.nms.store().pin_blob("blobs/cd/cd01", "crashed-request", long_ago).await.expect("pin"));
    assert!(app.nms.store().begin_blob_delete("blobs/cd/cd02", long_ago).await.expect("mark"));
    std::fs::write(dir.join("cd03"), b"upload in flight").expect("write");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // A fresh pin (an upload in flight) is kept, and protects its (old) blob.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    assert!(app.nms.store().pin_blob("blobs/cd/cd03", "live-request", now).await.expect("pin"));
    let r = app.nms.blobs().sweep(Duration::from_secs(1)).await.expect("sweep");
    assert_eq!(r.stale_marks_dropped, 2);
    assert_eq!(r.blobs_deleted, 2);
    let left: Vec<_> = app.blob_files().iter().filter_map(|p| p.file_name()?.to_str().map(String::from)).collect();
    assert_eq!(left, ["cd03"]);
    // The live pin still holds.
    assert!(!app.nms.store().begin_blob_delete("blobs/cd/cd03", now).await.expect("check"));
}

async fn seq_of(app: &TestApp, url: &str) -> i64 {
    let v: Value = app.get(url).await.json().await.expect("json");
    v["object"]["lastModSeq"].as_i64().or_else(|| v["folder"]["lastModSeq"].as_i64()).expect("lastModSeq")
}

#[tokio::test]
async fn renaming_stamps_the_folder_not_its_children_and_not_its_parent() {
    let app = spawn_app().await;
    let parent = app.create_folder(json!({"parentFolderPath": "/", "name": "p"})).await;
    let f = app.create_folder(json!({"parentFolder": parent, "name": "f"})).await;
    let child = app.create_folder(json!({"parentFolder": f, "name": "c"})).await;
    let obj = app.create_object(json!({"parentFolder": f})).await;
    let (p0, f0, c0, o0) =
        (seq_of(&app, &parent).await, seq_of(&app, &f).await, seq_of(&app, &child).await, seq_of(&app, &obj).await);
    let res = app.put_json(&format!("{f}/folderName"), json!({"name": "renamed"})).await;
    assert_eq!(res.status(), 200);
    let b = app.nms.find_box("base", ALICE).await.expect("db").expect("box");
    let f1 = seq_of(&app, &f).await;
    assert!(f1 > f0, "the renamed folder changes");
    assert_eq!(f1, b.modseq, "stamped with the box modseq of the rename");
    assert_eq!(seq_of(&app, &parent).await, p0, "the parent does not change");
    assert_eq!(seq_of(&app, &child).await, c0, "a subfolder does not change");
    assert_eq!(seq_of(&app, &obj).await, o0, "an object inside does not change");
    // Renaming to the same name changes nothing.
    app.put_json(&format!("{f}/folderName"), json!({"name": "renamed"})).await;
    assert_eq!(seq_of(&app, &f).await, f1);
}

#[tokio::test]
async fn deleting_a_tree_leaves_a_tombstone_for_every_item_in_it() {
    let app = spawn_app().await;
    let b = app.nms.find_box("base", ALICE).await.expect("db").expect("box");
    let top = app.create_folder(json!({"parentFolderPath": "/", "name": "top"})).await;
    let sub = app.create_folder(json!({"parentFolder": top, "name": "sub"})).await;
    let o1 = app.create_object(json!({"parentFolder": top, "correlationId": "c-1"})).await;
    let o2 = app.create_object(json!({"parentFolder": sub, "correlationId": "c-2"})).await;
    let keep = app.create_object(json!({"parentFolderPath": "/other"})).await;
    let before = app.nms.find_box("base", ALICE).await.expect("db").expect("box").modseq;
    assert!(before > b.modseq);
    assert_eq!(app.delete(&top).await.status(), 204);
    let t = app.nms.store().tombstones_since(&b, before).await.expect("tombstones");
    let mut got: Vec<(String, String, Option<String>)> =
        t.iter().map(|t| (t.kind.clone(), t.public_id.clone(), t.correlation_id.clone())).collect();
    got.sort();
    let mut want = vec![
        ("folder".to_string(), last_segment(&top), None),
        ("folder".to_string(), last_segment(&sub), None),
        ("object".to_string(), last_segment(&o1), Some("c-1".to_string())),
        ("object".to_string(), last_segment(&o2), Some("c-2".to_string())),
    ];
    want.sort();
    assert_eq!(got, want);
    // One request, one modseq for the whole tree.
    assert!(t.iter().all(|x| x.last_mod_seq == before + 1), "{t:?}");
    assert_eq!(app.get(&keep).await.status(), 200);
}

#[tokio::test]
async fn a_deposit_refused_after_its_payload_was_stored_leaves_no_blob() {
    let app = spawn_app().await;
    // The payload (above the inline limit) streams to object storage before the unknown
    // parent is found out; the refusal must remove it.
    let unknown = format!("{}/folders/nonexistent", app.base(ALICE));
    let (ct, body) = form()
        .root_fields(&json!({"parentFolder": unknown}))
        .part(
            &[("Content-Disposition", "form-data; name=\"attachments\""), ("Content-Type", "image/png")],
            &vec![7u8; 50_000],
        )
        .finish("multipart/form-data");
    let res = app.deposit(&ct, body).await;
    assert_error(res, 400, "SVC0002").await;
    assert!(app.blob_files().is_empty(), "{:?}", app.blob_files());
}

#[tokio::test]
async fn temporaries_of_a_process_that_is_gone_are_removed_at_start_up() {
    let app = spawn_app().await;
    let tmp = app.data.path().join("blobs/tmp");
    // What a process killed mid-upload leaves: its unlocked lock file, a temporary and the
    // staging file object_store's local store writes beside it (which its listing skips).
    std::fs::write(tmp.join("gone.lock"), b"").expect("write");
    std::fs::create_dir(tmp.join("gone")).expect("mkdir");
    std::fs::write(tmp.join("gone/upload"), b"half").expect("write");
    std::fs::write(tmp.join("gone/upload#1"), b"staged").expect("write");
    // The running server's temporaries are its own, however young or old.
    let live = app.nms.blobs().local_temp_dir().expect("local disk").join("upload#1");
    std::fs::write(&live, b"in flight").expect("write");
    app.restarted().await;
    assert!(!tmp.join("gone").exists() && !tmp.join("gone.lock").exists(), "{:?}", app.blob_files());
    assert!(live.exists(), "a live process's temporary is kept");
    // The sweep removes nothing of a live process within the grace period either.
    let r = app.nms.blobs().sweep(Duration::from_secs(3600)).await.expect("sweep");
    assert_eq!(r.temporaries_deleted, 0);
    assert_eq!(app.blob_files(), [live]);
}
