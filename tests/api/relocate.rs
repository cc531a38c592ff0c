//! copyToFolder and moveToFolder: recursive copies with new ids and shared blobs, moves
//! that keep ids, change stamping (CPM 6.6.1), and the refusals.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

const COPY: &str = "/folders/operations/copyToFolder";
const MOVE: &str = "/folders/operations/moveToFolder";

fn tsr(target: &str, folders: &[&str], objects: &[&str]) -> Value {
    let r = |l: &[&str]| l.iter().map(|u| json!({"resourceURL": u})).collect::<Vec<_>>();
    json!({"targetSourceRef": {"targetRef": {"resourceURL": target}, "sourceRefs": {
        "folders": {"folderReference": r(folders)}, "objects": {"objectReference": r(objects)}}}})
}

async fn folder_at(app: &TestApp, path: &str) -> String {
    let res = app.get(&format!("{}/folders/operations/pathToId?path={}", app.base(ALICE), enc(path))).await;
    let v: Value = res.json().await.unwrap();
    v["reference"]["resourceURL"].as_str().unwrap_or_else(|| panic!("{path}: {v}")).to_string()
}

async fn get(app: &TestApp, url: &str) -> Value {
    app.get(url).await.json().await.unwrap()
}

fn seq(v: &Value) -> i64 {
    v["object"]["lastModSeq"].as_i64().or_else(|| v["folder"]["lastModSeq"].as_i64()).unwrap()
}

/// `/src` with a subfolder `/src/sub`, an object with a blob payload in `/src` and a text
/// object in `/src/sub`; the target `/dst`.
async fn tree(app: &TestApp) -> (String, String, String, String, String) {
    let (ct, body) = form()
        .root_fields(&json!({"parentFolderPath": "/src", "attributes": {"attribute": [{"name": "Subject", "value": ["photo"]}]}, "flags": {"flag": ["\\Seen"]}}))
        .part(&[("Content-Disposition", "form-data; name=\"attachments\""), ("Content-Type", "image/jpeg")], &vec![3u8; 25_000])
        .finish("multipart/form-data");
    let v: Value = app.deposit(&ct, body).await.json().await.unwrap();
    let photo = v["reference"]["resourceURL"].as_str().unwrap().to_string();
    let note = app
        .create_object(json!({"parentFolderPath": "/src/sub", "attributes": {"attribute": [{"name": "Subject", "value": ["unique-note-words"]}]}}))
        .await;
    let dst = app.create_folder(json!({"parentFolderPath": "/", "name": "dst"})).await;
    (folder_at(app, "/src").await, folder_at(app, "/src/sub").await, photo, note, dst)
}

#[tokio::test]
async fn copying_a_tree_makes_new_items_and_shares_blobs() {
    let app = spawn_app().await;
    let (src, sub, photo, note, dst) = tree(&app).await;
    let loose = app.create_object(json!({"parentFolderPath": "/loose"})).await;
    let blobs_before = app.blob_files().len();
    let src_before = get(&app, &src).await;
    let missing = format!("{}/objects/nonexistent", app.base(ALICE));

    let (status, v) = app.post_rel(COPY, tsr(&dst, &[&src], &[&loose, &missing])).await;
    assert_eq!(status, 200, "{v}");
    let list = v["bulkResponseList"]["response"].as_array().unwrap();
    assert_eq!(list.len(), 3, "the directly named sources only");
    assert_eq!(list[0]["code"], 200);
    let copy = list[0]["success"]["resourceURL"].as_str().unwrap().to_string();
    assert_ne!(copy, src, "a copy has a new id");
    assert_eq!(list[0]["success"]["path"], "/dst/src");
    let loose_copy = list[1]["success"]["resourceURL"].as_str().unwrap().to_string();
    assert_eq!(list[1]["success"]["path"], format!("/dst/{}", last_segment(&loose_copy)));
    assert_eq!(list[2]["code"], 400);
    assert_eq!(list[2]["failure"]["serviceException"]["messageId"], "SVC0002");
    assert_eq!(list[2]["failure"]["serviceException"]["variables"][0], missing);

    // The copy holds copies of everything, recursively, with new ids.
    let copied_sub = folder_at(&app, "/dst/src/sub").await;
    assert_ne!(copied_sub, sub);
    let c: Value = get(&app, &format!("{copy}?listFilter=Objects")).await;
    let copied_photo = c["folder"]["objects"]["objectReference"][0]["resourceURL"].as_str().unwrap().to_string();
    assert_ne!(copied_photo, photo);
    let (p, cp) = (get(&app, &photo).await, get(&app, &copied_photo).await);
    assert_eq!(p["object"]["attributes"], cp["object"]["attributes"]);
    assert_eq!(cp["object"]["flags"]["flag"], json!(["\\Seen"]));
    let bytes = app.get(cp["object"]["payloadPart"][0]["href"].as_str().unwrap()).await.bytes().await.unwrap();
    assert_eq!(bytes.len(), 25_000);
    assert_eq!(app.blob_files().len(), blobs_before, "blobs are shared, not duplicated");
    // Copies are creations: stamped with this request's modseq, also found by search.
    assert!(seq(&cp) > seq(&p));
    let (_, found) = app
        .post_rel("/objects/operations/search", json!({"selectionCriteria": {"maxEntries": 10, "searchCriteria": {"criterion": [{"type": "WholeWord", "value": "unique"}]}}}))
        .await;
    assert_eq!(found["objectList"]["object"].as_array().unwrap().len(), 2, "original and copy of the note");
    // The source is untouched.
    assert_eq!(get(&app, &src).await, src_before);
    assert_eq!(app.get(&note).await.status(), 200);
    // Deleting the original keeps the shared blob for the copy.
    assert_eq!(app.delete(&src).await.status(), 204);
    assert_eq!(
        app.get(cp["object"]["payloadPart"][0]["href"].as_str().unwrap()).await.bytes().await.unwrap().len(),
        25_000
    );
    assert_eq!(app.blob_files().len(), 1);
}

#[tokio::test]
async fn moving_keeps_ids_changes_the_moved_item_not_its_children() {
    let app = spawn_app().await;
    let (src, sub, photo, note, dst) = tree(&app).await;
    let loose = app.create_object(json!({"parentFolderPath": "/loose"})).await;
    let (s0, sub0, p0, n0, d0) = (
        seq(&get(&app, &src).await),
        seq(&get(&app, &sub).await),
        seq(&get(&app, &photo).await),
        seq(&get(&app, &note).await),
        seq(&get(&app, &dst).await),
    );
    let (status, v) = app.post_rel(MOVE, tsr(&dst, &[&src], &[&loose])).await;
    assert_eq!(status, 200, "{v}");
    let list = v["bulkResponseList"]["response"].as_array().unwrap();
    assert_eq!(list[0]["success"], json!({"resourceURL": src, "path": "/dst/src"}));
    assert_eq!(list[1]["success"]["resourceURL"], loose);
    assert_eq!(list[1]["success"]["path"], format!("/dst/{}", last_segment(&loose)));

    // Same ids, new paths, below too.
    assert_eq!(folder_at(&app, "/dst/src/sub").await, sub);
    let n = get(&app, &note).await;
    assert_eq!(n["object"]["path"], format!("/dst/src/sub/{}", last_segment(&note)));
    let l = get(&app, &loose).await;
    assert_eq!(l["object"]["parentFolder"], dst);
    let res = app.get(&format!("{}/folders/operations/pathToId?path=%2Fsrc", app.base(ALICE))).await;
    assert_eq!(res.status(), 404);
    // The moved items change (one modseq); their children and the target do not.
    let moved = seq(&get(&app, &src).await);
    assert!(moved > s0);
    assert_eq!(seq(&l), moved);
    assert_eq!(seq(&get(&app, &sub).await), sub0);
    assert_eq!(seq(&get(&app, &photo).await), p0);
    assert_eq!(seq(&n), n0);
    assert_eq!(seq(&get(&app, &dst).await), d0);
    // Searches scoped to the new place find the moved objects.
    let (_, v) = app
        .post_rel(
            "/objects/operations/search",
            json!({"selectionCriteria": {"maxEntries": 10, "searchScope": {"resourceURL": dst}}}),
        )
        .await;
    assert_eq!(v["objectList"]["object"].as_array().unwrap().len(), 3);
    // Moving where it already is changes nothing.
    let (status, _) = app.post_rel(MOVE, tsr(&dst, &[&src], &[])).await;
    assert_eq!(status, 200);
    assert_eq!(seq(&get(&app, &src).await), moved);
}

#[tokio::test]
async fn moves_and_copies_that_cannot_be_done() {
    let app = spawn_app_with(|s| s.nms.service_only_folders = vec!["/Default".into()]).await;
    let (src, sub, _photo, _note, dst) = tree(&app).await;
    let root = app.root().await;
    // Into its own subtree, or itself; the root cannot move: per item 400.
    for (target, source) in [(&sub, &src), (&src, &src), (&dst, &root)] {
        for op in [MOVE, COPY] {
            let (status, v) = app.post_rel(op, tsr(target, &[source], &[])).await;
            assert_eq!(status, 400, "{op} {v}");
            assert_eq!(v["bulkResponseList"]["response"][0]["failure"]["serviceException"]["messageId"], "SVC0002");
        }
    }
    assert_eq!(folder_at(&app, "/src/sub").await, sub, "nothing moved");
    // A name already taken in the target: 409 for that item.
    let clash = app.create_folder(json!({"parentFolder": dst, "name": "src"})).await;
    let (status, v) = app.post_rel(MOVE, tsr(&dst, &[&src], &[])).await;
    assert_eq!(status, 409, "{v}");
    app.delete(&clash).await;
    // A target that does not exist, or is not a folder URL of this box: the whole request.
    for target in
        [format!("{}/folders/nonexistent", app.base(ALICE)), format!("{}/folders/x", app.base(BOB)), "nope".into()]
    {
        let (status, v) = app.post_rel(MOVE, tsr(&target, &[&src], &[])).await;
        assert_eq!((status, message_id(&v)), (400, "SVC0002"), "{v}");
    }
    // A target only service accounts may write: 403 POL1031 for the subscriber.
    let res = app
        .req_as("pf", Method::POST, &format!("{}/objects", app.base(ALICE)))
        .json(&json!({"object": {"parentFolderPath": "/Default"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let default = folder_at(&app, "/Default").await;
    for op in [MOVE, COPY] {
        let (status, v) = app.post_rel(op, tsr(&default, &[&src], &[])).await;
        assert_eq!((status, message_id(&v)), (403, "POL1031"), "{v}");
    }
    // Nothing named, malformed bodies.
    for bad in [
        tsr(&dst, &[], &[]),
        json!({"targetSourceRef": {"sourceRefs": {}}}),
        json!({"targetSourceRef": {"targetRef": {"resourceURL": dst}}}),
        json!({"copy": {}}),
    ] {
        let (status, v) = app.post_rel(COPY, bad.clone()).await;
        assert_eq!((status, message_id(&v)), (400, "SVC0002"), "{bad}: {v}");
    }
    assert_eq!(folder_at(&app, "/src").await, src);
}

#[tokio::test]
async fn deep_trees_copy_and_move_whole() {
    let app = spawn_app().await;
    // /deep/l1/l2/l3/l4, two objects and a side branch at every level.
    let mut path = String::from("/deep");
    let mut levels = Vec::new();
    for i in 1..=5 {
        app.create_object(json!({"parentFolderPath": path})).await;
        app.create_object(json!({"parentFolderPath": path})).await;
        app.create_folder(json!({"parentFolderPath": path, "name": format!("side{i}")})).await;
        levels.push(path.clone());
        path.push_str(&format!("/l{i}"));
    }
    let deep = folder_at(&app, "/deep").await;
    let dst = app.create_folder(json!({"parentFolderPath": "/", "name": "dst"})).await;
    assert_eq!(count_in(&app, deep.clone()).await, 10);

    let (status, v) = app.post_rel(COPY, tsr(&dst, &[&deep], &[])).await;
    assert_eq!(status, 200, "{v}");
    let copy = v["bulkResponseList"]["response"][0]["success"]["resourceURL"].as_str().unwrap().to_string();
    assert_eq!(count_in(&app, copy.clone()).await, 10);
    for (i, level) in levels.iter().enumerate() {
        let copied = format!("/dst{level}");
        assert_ne!(folder_at(&app, &copied).await, folder_at(&app, level).await);
        folder_at(&app, &format!("{copied}/side{}", i + 1)).await;
    }

    // Move the original under the copy's deepest folder: every path follows.
    let deepest_copy = folder_at(&app, "/dst/deep/l1/l2/l3/l4").await;
    let (status, v) = app.post_rel(MOVE, tsr(&deepest_copy, &[&deep], &[])).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["bulkResponseList"]["response"][0]["success"]["path"], "/dst/deep/l1/l2/l3/l4/deep");
    for level in &levels {
        let moved = format!("/dst/deep/l1/l2/l3/l4{level}");
        folder_at(&app, &moved).await;
    }
    assert_eq!(count_in(&app, copy).await, 20, "the copy's subtree now holds the moved original too");
    let res = app.get(&format!("{}/folders/operations/pathToId?path=%2Fdeep", app.base(ALICE))).await;
    assert_eq!(res.status(), 404);
    // And back: moving the copy into the moved original is a cycle.
    let (status, _) = app.post_rel(MOVE, tsr(&deep, &[&folder_at(&app, "/dst/deep").await], &[])).await;
    assert_eq!(status, 400);
}

/// How many objects a search scoped to `scope` (recursive) finds.
async fn count_in(app: &TestApp, scope: String) -> usize {
    let sel = json!({"selectionCriteria": {"maxEntries": 100, "searchScope": {"resourceURL": scope}}});
    let (_, v) = app.post_rel("/objects/operations/search", sel).await;
    v["objectList"]["object"].as_array().unwrap().len()
}

#[tokio::test]
async fn non_ascii_folder_names_keep_paths_right_through_rename_and_move() {
    let app = spawn_app().await;
    let src = app.create_folder(json!({"parentFolderPath": "/", "name": "Ärger"})).await;
    let kid = app.create_folder(json!({"parentFolder": src, "name": "kid"})).await;
    app.create_folder(json!({"parentFolder": kid, "name": "日本語"})).await;
    let obj = app.create_object(json!({"parentFolderPath": "/Ärger/kid/日本語"})).await;
    let dst = app.create_folder(json!({"parentFolderPath": "/", "name": "T"})).await;
    let (status, _) = app.post_rel(MOVE, tsr(&dst, &[&src], &[])).await;
    assert_eq!(status, 200);
    assert_eq!(folder_at(&app, "/T/Ärger/kid").await, kid);
    folder_at(&app, "/T/Ärger/kid/日本語").await;
    assert_eq!(get(&app, &obj).await["object"]["path"], format!("/T/Ärger/kid/日本語/{}", last_segment(&obj)));
    assert_eq!(app.put_json(&format!("{src}/folderName"), json!({"name": "Ωμέγα"})).await.status(), 200);
    assert_eq!(folder_at(&app, "/T/Ωμέγα/kid").await, kid);
    assert_eq!(get(&app, &obj).await["object"]["path"], format!("/T/Ωμέγα/kid/日本語/{}", last_segment(&obj)));
}
