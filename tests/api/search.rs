//! Object and folder search: every criterion type, operators and nesting, scope, sorting,
//! paging with cursors (exact continuation, complete walks, restarts), and bad input.

use std::collections::HashSet;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

const SEARCH: &str = "/objects/operations/search";
const FOLDER_SEARCH: &str = "/folders/operations/search";

/// Create an object in alice's box with these attributes (`[name, value]` pairs) and flags.
async fn object(app: &TestApp, path: &str, attrs: &[(&str, &str)], flags: &[&str]) -> String {
    let attribute: Vec<Value> = attrs.iter().map(|(n, v)| json!({"name": n, "value": [v]})).collect();
    app.create_object(
        json!({"parentFolderPath": path, "attributes": {"attribute": attribute}, "flags": {"flag": flags}}),
    )
    .await
}

/// Search with `criteria` (a `searchCriteria` value, or Null for none) and extra selection
/// members; returns the resource URLs of one page, and the cursor.
async fn page(app: &TestApp, criteria: Value, extra: Value) -> (Vec<String>, Option<String>) {
    let mut sel = json!({"maxEntries": 100});
    if !criteria.is_null() {
        sel["searchCriteria"] = criteria;
    }
    if let Value::Object(m) = extra {
        for (k, v) in m {
            sel[k] = v;
        }
    }
    let (status, body) = app.post_rel(SEARCH, json!({ "selectionCriteria": sel })).await;
    assert_eq!(status, 200, "{body}");
    let list = &body["objectList"];
    let urls = list["object"]
        .as_array()
        .unwrap_or_else(|| panic!("objectList.object is an array: {body}"))
        .iter()
        .map(|o| o["resourceURL"].as_str().unwrap().to_string())
        .collect();
    (urls, list["cursor"].as_str().map(String::from))
}

/// The set of URLs a search finds (one page is enough for these small boxes).
async fn found(app: &TestApp, criteria: Value) -> HashSet<String> {
    let (urls, cursor) = page(app, criteria, json!({})).await;
    assert!(cursor.is_none());
    urls.into_iter().collect()
}

fn set(urls: &[&String]) -> HashSet<String> {
    urls.iter().map(|u| u.to_string()).collect()
}

fn one(kind: &str, name: Option<&str>, value: &str) -> Value {
    let mut c = json!({"type": kind, "value": value});
    if let Some(n) = name {
        c["name"] = json!(n);
    }
    json!({"criterion": [c]})
}

#[tokio::test]
async fn attribute_flag_and_text_criteria() {
    let app = spawn_app().await;
    let a = object(&app, "/m", &[("From", "tel:+1111"), ("Subject", "Football tonight")], &["\\Seen"]).await;
    let b = object(&app, "/m", &[("From", "tel:+2222"), ("Subject", "see you at the FOOTBALL game")], &[]).await;
    let c = object(&app, "/m", &[("From", "tel:+1111"), ("To", "tel:+3333"), ("To", "tel:+4444")], &[]).await;

    // Attribute: exact value, any of several values, names case-insensitive, values not.
    assert_eq!(found(&app, one("Attribute", Some("From"), "tel:+1111")).await, set(&[&a, &c]));
    assert_eq!(found(&app, one("Attribute", Some("from"), "tel:+1111")).await, set(&[&a, &c]));
    assert_eq!(found(&app, one("Attribute", Some("To"), "tel:+4444")).await, set(&[&c]));
    assert_eq!(found(&app, one("Attribute", Some("Subject"), "football tonight")).await, set(&[]));
    assert_eq!(found(&app, one("Attribute", Some("Subject"), "Football")).await, set(&[]), "no substring");

    // Flag: set and not set; flag names case-insensitive.
    assert_eq!(found(&app, one("Flag", Some("\\Seen"), "true")).await, set(&[&a]));
    assert_eq!(found(&app, one("Flag", Some("\\seen"), "false")).await, set(&[&b, &c]));
    assert_eq!(found(&app, one("Flag", Some("\\Seen"), "")).await, set(&[&a]), "value defaults to true");

    // AllTextAttributes: case-insensitive substring over text attributes, short needles too.
    assert_eq!(found(&app, one("AllTextAttributes", None, "fOOtBall")).await, set(&[&a, &b]));
    assert_eq!(found(&app, one("AllTextAttributes", None, "tball gam")).await, set(&[&b]));
    assert_eq!(found(&app, one("AllTextAttributes", None, "+3")).await, set(&[&c]));
    assert_eq!(found(&app, one("AllTextAttributes", None, "pager")).await, set(&[]), "Message-Context is not text");
    assert_eq!(found(&app, one("AllTextAttributes", None, "100%")).await, set(&[]), "wildcards are literal");
}

#[tokio::test]
async fn whole_words_in_attributes_and_textual_payloads() {
    let app = spawn_app().await;
    let body = "Meet me at the stadium; bring the tickets.";
    let (ct, mp) = form()
        .root_fields(
            &json!({"parentFolderPath": "/w", "attributes": {"attribute": [{"name": "Subject", "value": ["plans"]}]}}),
        )
        .part(
            &[("Content-Disposition", "form-data; name=\"attachments\""), ("Content-Type", "text/plain")],
            body.as_bytes(),
        )
        .finish("multipart/form-data");
    let res = app.deposit(&ct, mp).await;
    assert_eq!(res.status(), 201);
    let v: Value = res.json().await.unwrap();
    let with_payload = v["reference"]["resourceURL"].as_str().unwrap().to_string();
    // A large textual part goes to object storage; its start is still indexed.
    let big = format!("{} quixotic {}", "filler ".repeat(3000), "tail");
    let (ct, mp) = form()
        .root_fields(&json!({"parentFolderPath": "/w"}))
        .part(
            &[
                ("Content-Disposition", "form-data; name=\"attachments\""),
                ("Content-Type", "text/plain; charset=utf-8"),
            ],
            big.as_bytes(),
        )
        .finish("multipart/form-data");
    let v: Value = app.deposit(&ct, mp).await.json().await.unwrap();
    let blob_text = v["reference"]["resourceURL"].as_str().unwrap().to_string();
    let binary = {
        let (ct, mp) = form()
            .root_fields(&json!({"parentFolderPath": "/w"}))
            .part(
                &[("Content-Disposition", "form-data; name=\"attachments\""), ("Content-Type", "image/png")],
                b"stadium",
            )
            .finish("multipart/form-data");
        let v: Value = app.deposit(&ct, mp).await.json().await.unwrap();
        v["reference"]["resourceURL"].as_str().unwrap().to_string()
    };
    let subject = object(&app, "/w", &[("Subject", "Stadium tour")], &[]).await;

    assert_eq!(
        found(&app, one("WholeWord", None, "stadium")).await,
        set(&[&with_payload, &subject]),
        "not binary parts"
    );
    assert_eq!(found(&app, one("WholeWord", None, "TICKETS")).await, set(&[&with_payload]));
    assert_eq!(found(&app, one("WholeWord", None, "ticket")).await, set(&[]), "whole words only");
    assert_eq!(found(&app, one("WholeWord", None, "quixotic")).await, set(&[&blob_text]));
    assert_eq!(found(&app, one("AllTextAttributes", None, "ixoti")).await, set(&[&blob_text]));
    let _ = binary;
}

#[tokio::test]
async fn date_criteria_use_the_stored_date_min_inclusive_max_exclusive() {
    let app = spawn_app().await;
    let early = object(&app, "/d", &[("Date", "2001-01-01T00:00:00Z")], &[]).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let late = object(&app, "/d", &[], &[]).await;
    let late_obj: Value = app.get(&late).await.json().await.unwrap();
    // The Date attribute of `late` was derived from its stored time (second precision).
    let stored =
        late_obj["object"]["attributes"]["attribute"].as_array().unwrap().iter().find(|a| a["name"] == "Date").unwrap()
            ["value"][0]
            .as_str()
            .unwrap()
            .to_string();
    assert_eq!(found(&app, one("Date", None, &format!("minDate={stored}"))).await, set(&[&late]));
    assert_eq!(found(&app, one("Date", None, &format!("maxDate={stored}"))).await, set(&[&early]));
    assert_eq!(
        found(&app, one("Date", None, &format!("minDate=2000-01-01T00:00:00Z&maxDate={stored}"))).await,
        set(&[&early]),
        "the stored date counts, not the Date attribute (2001)"
    );
    assert_eq!(found(&app, one("Date", None, "maxDate=2000-01-01T00:00:00Z")).await, set(&[]));
    for bad in ["", "minDate=yesterday", "from=2001-01-01T00:00:00Z"] {
        let (status, body) = app
            .post_rel(SEARCH, json!({"selectionCriteria": {"maxEntries": 5, "searchCriteria": one("Date", None, bad)}}))
            .await;
        assert_eq!((status, message_id(&body)), (400, "SVC0002"), "{bad}: {body}");
    }
}

#[tokio::test]
async fn operators_and_nesting() {
    let app = spawn_app().await;
    let a = object(&app, "/o", &[("From", "x"), ("Direction", "In")], &["\\Seen"]).await;
    let b = object(&app, "/o", &[("From", "y"), ("Direction", "In")], &[]).await;
    let c = object(&app, "/o", &[("From", "x"), ("Direction", "Out")], &[]).await;
    let from_x = json!({"type": "Attribute", "name": "From", "value": "x"});
    let dir_in = json!({"type": "Attribute", "name": "Direction", "value": "In"});
    let seen = json!({"type": "Flag", "name": "\\Seen", "value": "true"});

    assert_eq!(found(&app, json!({"criterion": [from_x, dir_in]})).await, set(&[&a]), "And by default");
    assert_eq!(found(&app, json!({"criterion": [from_x, dir_in], "operator": "And"})).await, set(&[&a]));
    assert_eq!(found(&app, json!({"criterion": [from_x, dir_in], "operator": "Or"})).await, set(&[&a, &b, &c]));
    assert_eq!(found(&app, json!({"criterion": [from_x], "operator": "Not"})).await, set(&[&b]));
    // Not of several: NOT (c1 AND c2).
    assert_eq!(found(&app, json!({"criterion": [from_x, dir_in], "operator": "Not"})).await, set(&[&b, &c]));
    // Nested groups: From=x AND NOT(\Seen).
    let nested = json!({"criterion": [from_x, {"searchCriteria": {"criterion": [seen], "operator": "Not"}}]});
    assert_eq!(found(&app, nested).await, set(&[&c]));
    // (Direction=Out) OR (From=y AND Direction=In)
    let nested = json!({"operator": "Or", "criterion": [
        {"type": "Attribute", "name": "Direction", "value": "Out"},
        {"searchCriteria": {"criterion": [{"type": "Attribute", "name": "From", "value": "y"}, dir_in]}},
    ]});
    assert_eq!(found(&app, nested).await, set(&[&b, &c]));
    // A single criterion may come as an object rather than an array.
    assert_eq!(found(&app, json!({"criterion": from_x})).await, set(&[&a, &c]));
}

#[tokio::test]
async fn scope_is_recursive_unless_asked_otherwise() {
    let app = spawn_app().await;
    let top = object(&app, "/s", &[], &[]).await;
    let deep = object(&app, "/s/inner", &[], &[]).await;
    let other = object(&app, "/t", &[], &[]).await;
    let v: Value =
        app.get(&format!("{}/folders/operations/pathToId?path=%2Fs", app.base(ALICE))).await.json().await.unwrap();
    let s = v["reference"]["resourceURL"].as_str().unwrap().to_string();
    let scope = json!({"searchScope": {"resourceURL": s}});
    let (urls, _) = page(&app, Value::Null, scope.clone()).await;
    assert_eq!(urls.iter().collect::<HashSet<_>>(), [&top, &deep].into_iter().collect());
    let mut flat = scope.clone();
    flat["nonRecursiveScope"] = json!(true);
    let (urls, _) = page(&app, Value::Null, flat).await;
    assert_eq!(urls, vec![top.clone()]);
    let (urls, _) = page(&app, Value::Null, json!({})).await;
    assert!(urls.contains(&other) && urls.len() == 3);
    // A scope that is not a folder of this box.
    for bad in [format!("{}/folders/nope", app.base(ALICE)), format!("{}/folders/x", app.base(BOB)), "junk".into()] {
        let (status, body) = app
            .post_rel(SEARCH, json!({"selectionCriteria": {"maxEntries": 5, "searchScope": {"resourceURL": bad}}}))
            .await;
        assert_eq!((status, message_id(&body)), (400, "SVC0002"), "{body}");
    }
}

#[tokio::test]
async fn sorting_by_date_and_attribute_both_request_forms() {
    let app = spawn_app().await;
    let mut made = Vec::new();
    for subject in ["banana", "apple", "cherry"] {
        made.push(object(&app, "/sort", &[("Subject", subject)], &[]).await);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let (urls, _) =
        page(&app, Value::Null, json!({"sortCriteria": {"criterion": [{"type": "Date", "order": "Ascending"}]}})).await;
    assert_eq!(urls, made);
    let (urls, _) = page(&app, Value::Null, json!({"sortCriteria": {"criterion": [{"type": "Date"}]}})).await;
    assert_eq!(urls, made.iter().rev().cloned().collect::<Vec<_>>(), "Descending by default");
    let (urls, _) = page(
        &app,
        Value::Null,
        json!({"sortCriterion": {"type": "Attribute", "name": "subject", "order": "Ascending"}}),
    )
    .await;
    assert_eq!(urls, vec![made[1].clone(), made[0].clone(), made[2].clone()]);
    let (urls, _) = page(&app, Value::Null, json!({"sortCriterion": {"type": "Attribute", "name": "Subject"}})).await;
    assert_eq!(urls, vec![made[2].clone(), made[0].clone(), made[1].clone()]);
    for (bad, id) in [
        (json!({"sortCriterion": {"type": "Size"}}), "SVC0003"),
        (json!({"sortCriterion": {"type": "Date", "order": "Sideways"}}), "SVC0003"),
        (json!({"sortCriterion": {"type": "Attribute"}}), "SVC0002"),
    ] {
        let mut sel = json!({"maxEntries": 5});
        for (k, v) in bad.as_object().unwrap() {
            sel[k] = v.clone();
        }
        let (status, body) = app.post_rel(SEARCH, json!({ "selectionCriteria": sel })).await;
        assert_eq!((status, message_id(&body)), (400, id), "{body}");
    }
}

/// Walk a search to its end at `max` per page; returns the URLs in order and the page count.
async fn walk(app: &TestApp, base_url: &str, sel: Value) -> (Vec<String>, usize) {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut s = sel.clone();
        if let Some(c) = &cursor {
            s["fromCursor"] = json!(c);
        }
        let res = app
            .client
            .post(format!("{base_url}/nms/v1/base/{}{SEARCH}", enc(ALICE)))
            .basic_auth("alice", Some(PW))
            .json(&json!({ "selectionCriteria": s }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let v: Value = res.json().await.unwrap();
        let list = v["objectList"]["object"].as_array().unwrap();
        assert!(list.len() <= sel["maxEntries"].as_u64().unwrap() as usize, "maxEntries exceeded");
        out.extend(list.iter().map(|o| o["resourceURL"].as_str().unwrap().to_string()));
        pages += 1;
        match v["objectList"]["cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return (out, pages),
        }
        assert!(pages < 1000);
    }
}

#[tokio::test]
async fn paging_walks_every_object_exactly_once_across_changes_and_restarts() {
    let app = spawn_app().await;
    let mut all = Vec::new();
    let objects: Vec<Value> = (0..240)
        .map(|i| {
            json!({"parentFolderPath": format!("/p/{}", i % 4), "attributes": {"attribute": [
                {"name": "Subject", "value": [format!("s{:03}", (i * 37) % 240)]}]}})
        })
        .collect();
    let (status, v) =
        app.post_rel("/objects/operations/bulkCreation", json!({"objectList": {"object": objects}})).await;
    assert_eq!(status, 200);
    for r in v["bulkResponseList"]["response"].as_array().unwrap() {
        all.push(r["success"]["resourceURL"].as_str().unwrap().to_string());
    }

    // Default criteria: every object exactly once, in pages of 7, no cursor on the last one.
    let sel = json!({"maxEntries": 7});
    let (urls, pages) = walk(&app, &app.url, sel.clone()).await;
    assert_eq!(pages, 240usize.div_ceil(7));
    assert_eq!(urls, all, "storage order, each once");

    // Sorted by an attribute, too.
    let sorted =
        json!({"maxEntries": 11, "sortCriterion": {"type": "Attribute", "name": "Subject", "order": "Ascending"}});
    let (urls, _) = walk(&app, &app.url, sorted).await;
    assert_eq!(urls.len(), 240);
    assert_eq!(urls.iter().collect::<HashSet<_>>().len(), 240);

    // With no change in between, a page continues the previous one exactly.
    let (first, cursor) = page(&app, Value::Null, json!({"maxEntries": 10})).await;
    let (second, _) = page(&app, Value::Null, json!({"maxEntries": 10, "fromCursor": cursor.clone().unwrap()})).await;
    assert_eq!([first, second].concat(), all[..20].to_vec());

    // Changes during a walk: objects that exist throughout are returned exactly once;
    // the walk continues on a restarted server with the same cursor.
    let sel = json!({"maxEntries": 25, "sortCriterion": {"type": "Date", "order": "Descending"}});
    let (status, v) = app.post_rel(SEARCH, json!({ "selectionCriteria": sel })).await;
    assert_eq!(status, 200);
    let mut seen: Vec<String> = v["objectList"]["object"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["resourceURL"].as_str().unwrap().to_string())
        .collect();
    let cursor = v["objectList"]["cursor"].as_str().unwrap().to_string();
    let deleted = all[100].clone();
    assert_eq!(app.delete(&deleted).await.status(), 204);
    app.create_object(json!({"parentFolderPath": "/p/new"})).await;
    app.put_json(&format!("{}/flags", all[5]), json!({"flagList": {"flag": ["\\Flagged"]}})).await;
    let restarted = app.restarted().await;
    let mut rest_sel = sel.clone();
    rest_sel["fromCursor"] = json!(cursor);
    let (rest, _) = walk(&app, &restarted, rest_sel).await;
    seen.extend(rest);
    // The restarted server has another address: compare ids.
    let seen: Vec<String> = seen.iter().map(|u| last_segment(u)).collect();
    for u in all.iter().filter(|u| **u != deleted) {
        assert_eq!(seen.iter().filter(|s| **s == last_segment(u)).count(), 1, "{u} once");
    }
    assert!(!seen.contains(&last_segment(&deleted)));

    // A forged cursor, and a cursor reused with other criteria, are refused.
    let mut forged = cursor.clone().into_bytes();
    let mid = forged.len() / 2;
    forged[mid] = if forged[mid] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    for (fc, extra) in [
        (forged.as_str(), json!({"sortCriterion": {"type": "Date", "order": "Descending"}})),
        (cursor.as_str(), json!({"sortCriterion": {"type": "Date", "order": "Ascending"}})),
        (
            cursor.as_str(),
            json!({"sortCriterion": {"type": "Date", "order": "Descending"}, "searchCriteria": one("Flag", Some("\\Seen"), "false")}),
        ),
        ("garbage", json!({})),
    ] {
        let mut sel = json!({"maxEntries": 25, "fromCursor": fc});
        for (k, v) in extra.as_object().unwrap() {
            sel[k] = v.clone();
        }
        let (status, body) = app.post_rel(SEARCH, json!({ "selectionCriteria": sel })).await;
        assert_eq!((status, message_id(&body)), (400, "SVC0002"), "{body}");
        assert_eq!(body["requestError"]["serviceException"]["variables"][0], "fromCursor");
    }
}

#[tokio::test]
async fn created_vanished_and_preset_searches() {
    let app = spawn_app().await;
    let a = object(&app, "/c", &[("From", "tel:+1"), ("To", "tel:+9")], &[]).await;
    let b = object(&app, "/c", &[("From", "tel:+9"), ("To", "tel:+1")], &[]).await;
    let c = object(&app, "/c", &[("From", "tel:+5")], &[]).await;

    // CreatedObjects "" lists every object and answers a creation cursor.
    let created =
        |v: &str| json!({"selectionCriteria": {"maxEntries": 2, "searchCriteria": one("CreatedObjects", None, v)}});
    let (status, v) = app.post_rel(SEARCH, created("")).await;
    assert_eq!(status, 200);
    let cursor = v["objectList"]["cursor"].as_str().unwrap().to_string();
    assert!(v["objectList"]["creationCursor"].is_string());
    let mut body = created("");
    body["selectionCriteria"]["fromCursor"] = json!(cursor);
    let (_, v) = app.post_rel(SEARCH, body).await;
    assert!(v["objectList"]["cursor"].is_null());
    let creation_cursor = v["objectList"]["creationCursor"].as_str().unwrap().to_string();
    // Since that cursor: only what was created afterwards.
    let d = object(&app, "/c", &[], &[]).await;
    let (_, v) = app.post_rel(SEARCH, created(&creation_cursor)).await;
    let urls: Vec<&str> =
        v["objectList"]["object"].as_array().unwrap().iter().map(|o| o["resourceURL"].as_str().unwrap()).collect();
    assert_eq!(urls, [d.as_str()]);
    assert!(v["objectList"]["creationCursor"].is_string());
    let (status, body) = app.post_rel(SEARCH, created("forged")).await;
    assert_eq!((status, message_id(&body)), (400, "SVC0002"));

    // VanishedObjects: deleted objects as references, newest first.
    app.delete(&a).await;
    app.delete(&c).await;
    let (status, v) = app
        .post_rel(
            SEARCH,
            json!({"selectionCriteria": {"maxEntries": 10, "searchCriteria": one("VanishedObjects", None, "")}}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["objectReferenceList"]["objectReference"], json!([{"resourceURL": c}, {"resourceURL": a}]));
    let combined = json!({"criterion": [{"type": "VanishedObjects", "value": ""}, {"type": "Flag", "name": "\\Seen", "value": "true"}]});
    let negated = json!({"criterion": [{"type": "VanishedObjects", "value": ""}], "operator": "Not"});
    for bad in [combined, negated] {
        let (status, body) =
            app.post_rel(SEARCH, json!({"selectionCriteria": {"maxEntries": 10, "searchCriteria": bad}})).await;
        assert_eq!((status, message_id(&body)), (400, "SVC0002"), "{body}");
    }

    // PresetSearch RemoteParty: sent to or received from the party.
    assert_eq!(found(&app, one("PresetSearch", Some("RemoteParty"), "tel:+9")).await, set(&[&b]));
    let (status, body) =
        app.post_rel(SEARCH, json!({"selectionCriteria": {"maxEntries": 10, "searchCriteria": one("PresetSearch", Some("UPOneDotO"), "")}})).await;
    assert_eq!((status, message_id(&body)), (400, "SVC0003"), "{body}");
}

#[tokio::test]
async fn bad_searches_are_refused_precisely() {
    let app = spawn_app().await;
    object(&app, "/x", &[], &[]).await;
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({"selectionCriteria": {}}), 400, "SVC0002"),
        (json!({"selectionCriteria": {"maxEntries": 0}}), 400, "SVC0002"),
        (json!({"selectionCriteria": {"maxEntries": -3}}), 400, "SVC0002"),
        (json!({"selectionCriteria": {"maxEntries": "many"}}), 400, "SVC0002"),
        (
            json!({"selectionCriteria": {"maxEntries": 5, "searchCriteria": one("Conversation", None, "x")}}),
            400,
            "SVC0003",
        ),
        (json!({"selectionCriteria": {"maxEntries": 5, "searchCriteria": one("Nonsense", None, "x")}}), 400, "SVC0003"),
        (json!({"selectionCriteria": {"maxEntries": 5, "searchCriteria": {"criterion": []}}}), 400, "SVC0002"),
        (
            json!({"selectionCriteria": {"maxEntries": 5, "searchCriteria": {"criterion": [{"type": "Flag", "value": "true"}]}}}),
            400,
            "SVC0002",
        ),
        (
            json!({"selectionCriteria": {"maxEntries": 5, "searchCriteria": one("Flag", Some("bad flag"), "true")}}),
            400,
            "SVC0002",
        ),
        (
            json!({"selectionCriteria": {"maxEntries": 5, "searchCriteria": one("Flag", Some("\\Seen"), "maybe")}}),
            400,
            "SVC0003",
        ),
        (
            json!({"selectionCriteria": {"maxEntries": 5, "searchCriteria": {"criterion": [{"type": "Attribute", "value": "x"}]}}}),
            400,
            "SVC0002",
        ),
        (
            json!({"selectionCriteria": {"maxEntries": 5, "searchCriteria": one("WholeWord", None, "  ")}}),
            400,
            "SVC0002",
        ),
        (
            json!({"selectionCriteria": {"maxEntries": 5, "searchCriteria": {"criterion": [{"type": "Flag", "name": "\\Seen", "value": "true"}], "operator": "Xor"}}}),
            400,
            "SVC0003",
        ),
        (json!({"selectionCriteria": {"maxEntries": 5, "nonRecursiveScope": "perhaps"}}), 400, "SVC0003"),
        (json!({"selection": {"maxEntries": 5}}), 400, "SVC0002"),
    ];
    for (body, status, id) in cases {
        let (got, resp) = app.post_rel(SEARCH, body.clone()).await;
        assert_eq!((got, message_id(&resp)), (status, id), "{body} -> {resp}");
    }
    // Nesting too deep.
    let mut deep = one("Flag", Some("\\Seen"), "true");
    for _ in 0..10 {
        deep = json!({"criterion": [{"searchCriteria": deep}]});
    }
    let (status, body) =
        app.post_rel(SEARCH, json!({"selectionCriteria": {"maxEntries": 5, "searchCriteria": deep}})).await;
    assert_eq!((status, message_id(&body)), (400, "SVC0002"));
    // Not JSON at all.
    let res = app
        .req(Method::POST, &format!("{}{SEARCH}", app.base(ALICE)))
        .header("Content-Type", "application/json")
        .body("{\"selectionCriteria\": {")
        .send()
        .await
        .unwrap();
    assert_error(res, 400, "SVC0002").await;
    // maxEntries above the server's page limit is answered with at most that many.
    let app = spawn_app_with(|s| s.nms.search_page_max = 2).await;
    for _ in 0..3 {
        object(&app, "/y", &[], &[]).await;
    }
    let (urls, cursor) = page(&app, Value::Null, json!({"maxEntries": 1000})).await;
    assert_eq!(urls.len(), 2);
    assert!(cursor.is_some());
}

#[tokio::test]
async fn search_results_have_the_object_shape_and_other_boxes_stay_apart() {
    let app = spawn_app().await;
    let mine = object(&app, "/shape", &[("Subject", "shared words")], &["\\Seen"]).await;
    // Bob's object with the same text never shows up in alice's searches.
    let res = app
        .req_as("bob", Method::POST, &format!("{}/objects", app.base(BOB)))
        .json(&json!({"object": {"attributes": {"attribute": [{"name": "Subject", "value": ["shared words"]}]}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let (status, v) = app
        .post_rel(SEARCH, json!({"selectionCriteria": {"maxEntries": 10, "searchCriteria": one("AllTextAttributes", None, "shared")}}))
        .await;
    assert_eq!(status, 200);
    let list = v["objectList"]["object"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    let o = &list[0];
    // A search result is the object as GET returns it, its flags with their list's URL
    // (NMS D.20, D.21; a single GET, D.7, has none).
    let mut direct: Value = app.get(&mine).await.json().await.unwrap();
    assert!(direct["object"]["flags"].get("resourceURL").is_none());
    direct["object"]["flags"]["resourceURL"] = json!(format!("{mine}/flags"));
    assert_eq!(o, &direct["object"]);
    assert_eq!(app.get(o["flags"]["resourceURL"].as_str().unwrap()).await.status(), 200);
    let keys: Vec<&str> = o.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["parentFolder", "attributes", "flags", "resourceURL", "path", "lastModSeq"]);
    assert!(v["objectList"].get("cursor").is_none());
}

#[tokio::test]
async fn folder_search_finds_the_root_with_its_children_and_other_folders() {
    let app = spawn_app().await;
    let root = app.root().await;
    let projects = app.create_folder(json!({"parentFolder": root, "name": "projects"})).await;
    let qos = app.create_folder(json!({"parentFolder": projects, "name": "QoS meetings"})).await;
    let obj = app.create_object(json!({})).await;
    let (status, v) = app
        .post_rel(
            FOLDER_SEARCH,
            json!({"selectionCriteria": {"maxEntries": 3, "searchCriteria": one("Attribute", Some("root"), "Yes")}}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let folders = v["folderList"]["folder"].as_array().unwrap();
    assert_eq!(folders.len(), 1);
    let r = &folders[0];
    assert_eq!(r["resourceURL"], root);
    assert_eq!(r["subFolders"]["folderReference"], json!([{"resourceURL": projects}]));
    assert_eq!(r["objects"]["objectReference"], json!([{"resourceURL": obj}]));
    assert!(r.get("parentFolder").is_none());

    // By name, by substring of the name, by date; not the root's children lists for others.
    let (_, v) = app
        .post_rel(FOLDER_SEARCH, json!({"selectionCriteria": {"maxEntries": 3, "searchCriteria": one("Attribute", Some("Name"), "projects")}}))
        .await;
    assert_eq!(v["folderList"]["folder"][0]["resourceURL"], projects);
    assert_eq!(v["folderList"]["folder"][0]["path"], "/projects");
    assert!(v["folderList"]["folder"][0].get("subFolders").is_none());
    let (_, v) = app
        .post_rel(
            FOLDER_SEARCH,
            json!({"selectionCriteria": {"maxEntries": 3, "searchCriteria": one("AllTextAttributes", None, "qos")}}),
        )
        .await;
    assert_eq!(v["folderList"]["folder"].as_array().unwrap().len(), 1);
    assert_eq!(v["folderList"]["folder"][0]["resourceURL"], qos);
    let (_, v) = app
        .post_rel(FOLDER_SEARCH, json!({"selectionCriteria": {"maxEntries": 1, "searchCriteria": one("Date", None, "minDate=2000-01-01T00:00:00Z")}}))
        .await;
    assert_eq!(v["folderList"]["folder"].as_array().unwrap().len(), 1);
    let cursor = v["folderList"]["cursor"].as_str().unwrap().to_string();
    let (status, v) = app
        .post_rel(FOLDER_SEARCH, json!({"selectionCriteria": {"maxEntries": 5, "fromCursor": cursor, "searchCriteria": one("Date", None, "minDate=2000-01-01T00:00:00Z")}}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(v["folderList"]["folder"].as_array().unwrap().len(), 2, "3 folders in all");
    // Object-only search types are refused for folders.
    for kind in ["WholeWord", "CreatedObjects", "VanishedObjects", "PresetSearch"] {
        let (status, body) = app
            .post_rel(
                FOLDER_SEARCH,
                json!({"selectionCriteria": {"maxEntries": 3, "searchCriteria": one(kind, Some("RemoteParty"), "x")}}),
            )
            .await;
        assert_eq!((status, message_id(&body)), (400, "SVC0003"), "{kind}: {body}");
    }
}

#[tokio::test]
async fn filtered_walks_return_every_match_exactly_once() {
    let app = spawn_app().await;
    let mut flagged = Vec::new();
    let mut to_x = Vec::new();
    let mut text = Vec::new();
    for i in 0..45 {
        let flags: &[&str] = if i % 3 == 0 { &["\\Flagged"] } else { &[] };
        // Some objects carry the same value twice in one attribute.
        let to = if i % 5 == 0 {
            vec!["x", "x"]
        } else if i % 2 == 0 {
            vec!["x"]
        } else {
            vec!["y"]
        };
        let subject = if i % 4 == 0 { "quarterly figures" } else { "other" };
        let url = app
            .create_object(json!({"attributes": {"attribute": [{"name": "To", "value": to}, {"name": "Subject", "value": [subject]}]},
                "flags": {"flag": flags}}))
            .await;
        if i % 3 == 0 {
            flagged.push(url.clone());
        }
        if i % 5 == 0 || i % 2 == 0 {
            to_x.push(url.clone());
        }
        if i % 4 == 0 {
            text.push(url);
        }
    }
    for (criteria, want) in [
        (one("Flag", Some("\\Flagged"), "true"), &flagged),
        (one("Attribute", Some("To"), "x"), &to_x),
        (one("AllTextAttributes", None, "rterly fig"), &text),
        (one("WholeWord", None, "figures"), &text),
        (
            json!({"criterion": [{"type": "Attribute", "name": "To", "value": "x"}, {"type": "Flag", "name": "\\Flagged", "value": "true"}]}),
            &flagged.iter().filter(|u| to_x.contains(u)).cloned().collect(),
        ),
    ] {
        let (urls, pages) = walk(&app, &app.url, json!({"maxEntries": 4, "searchCriteria": criteria})).await;
        assert_eq!(&urls, want, "{criteria}");
        assert_eq!(pages, want.len().div_ceil(4), "no empty last page");
    }
}

#[tokio::test]
async fn odd_search_text_never_fails_the_server() {
    let app = spawn_app().await;
    let hit = object(&app, "/odd", &[("Subject", "C++ & C# \"quoted\" 100% ok")], &[]).await;
    for (kind, value) in [
        ("WholeWord", "!!!"),
        ("WholeWord", "\"quoted\""),
        ("WholeWord", "a\u{0}b"),
        ("WholeWord", "NEAR(x y)"),
        ("WholeWord", "x* OR y"),
        ("AllTextAttributes", "\"quoted\""),
        ("AllTextAttributes", "C++"),
        ("AllTextAttributes", "%"),
        ("AllTextAttributes", "\u{0}\u{0}\u{0}"),
        ("AllTextAttributes", "\" OR \""),
        ("AllTextAttributes", "ok*"),
    ] {
        let (status, body) = app
            .post_rel(SEARCH, json!({"selectionCriteria": {"maxEntries": 5, "searchCriteria": one(kind, None, value)}}))
            .await;
        assert!(status == 200 || status == 400, "{kind} {value:?}: {status} {body}");
        if status == 400 {
            assert_eq!(message_id(&body), "SVC0002", "{body}");
        }
    }
    // NUL cannot be stored in an attribute value, on any engine.
    let (status, body) = app
        .post_rel(
            "/objects",
            json!({"object": {"parentFolderPath": "/odd",
            "attributes": {"attribute": [{"name": "Subject", "value": ["before\u{0}after words"]}]}}}),
        )
        .await;
    assert_eq!((status, message_id(&body)), (400, "SVC0002"), "{body}");
    // Literal text with FTS operators and quotes is found as text.
    assert_eq!(found(&app, one("AllTextAttributes", None, "\"quoted\"")).await, set(&[&hit]));
    assert_eq!(found(&app, one("AllTextAttributes", None, "C++ &")).await, set(&[&hit]));
    assert_eq!(found(&app, one("WholeWord", None, "quoted")).await, set(&[&hit]));
}

#[tokio::test]
async fn a_creation_cursor_taken_mid_walk_loses_nothing() {
    let app = spawn_app().await;
    // One request's objects share a creation sequence.
    let (status, _) =
        app.post_rel("/objects/operations/bulkCreation", json!({"objectList": {"object": [{}, {}, {}, {}, {}]}})).await;
    assert_eq!(status, 200);
    let (_, v) = app
        .post_rel(
            SEARCH,
            json!({"selectionCriteria": {"maxEntries": 2, "searchCriteria": one("CreatedObjects", None, "")}}),
        )
        .await;
    let first: HashSet<String> = v["objectList"]["object"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["resourceURL"].as_str().unwrap().to_string())
        .collect();
    let cursor = v["objectList"]["creationCursor"].as_str().unwrap().to_string();
    let (_, v) = app
        .post_rel(
            SEARCH,
            json!({"selectionCriteria": {"maxEntries": 10, "searchCriteria": one("CreatedObjects", None, &cursor)}}),
        )
        .await;
    let rest: HashSet<String> = v["objectList"]["object"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["resourceURL"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(first.union(&rest).count(), 5, "every object is found by one search or the other");
    // Overlong text criteria are refused, not run.
    let long = "x".repeat(1025);
    for kind in ["AllTextAttributes", "WholeWord"] {
        let (status, body) = app
            .post_rel(SEARCH, json!({"selectionCriteria": {"maxEntries": 2, "searchCriteria": one(kind, None, &long)}}))
            .await;
        assert_eq!((status, message_id(&body)), (400, "SVC0002"));
    }
    let (status, body) = app
        .post_rel(FOLDER_SEARCH, json!({"selectionCriteria": {"maxEntries": 2, "searchCriteria": one("AllTextAttributes", None, &"%".repeat(30_000))}}))
        .await;
    assert_eq!((status, message_id(&body)), (400, "SVC0002"));
}

/// The text indexes take in each write's text when its transaction commits. Writes that
/// commit together (concurrent deposits and deletions share a transaction) are all found,
/// none of the deleted is, an id used again after its object went carries its new text
/// only, and on SQLite the full-text indexes check out against their content with nothing
/// left queued.
#[tokio::test]
async fn text_search_follows_writes_that_commit_together_and_reused_ids() {
    let app = spawn_app().await;
    // Signed in once: concurrent first sign-ins would meet the bound on password checks.
    assert_eq!(found(&app, one("WholeWord", None, "lima")).await, set(&[]));
    let deposits = (0..24).map(|i| {
        let app = &app;
        async move { object(app, "/t", &[("Subject", &format!("kilo{i} lima"))], &[]).await }
    });
    let urls: Vec<String> = futures_util::future::join_all(deposits).await;
    let (gone, kept): (Vec<_>, Vec<_>) = urls.iter().enumerate().partition(|(i, _)| i % 3 == 0);
    let deletions = gone.iter().map(|(_, u)| app.delete(u));
    for res in futures_util::future::join_all(deletions).await {
        assert_eq!(res.status(), 204);
    }
    let kept: Vec<&String> = kept.into_iter().map(|(_, u)| u).collect();
    assert_eq!(found(&app, one("WholeWord", None, "lima")).await, set(&kept));
    assert_eq!(found(&app, one("AllTextAttributes", None, "kilo3 ")).await, set(&[]), "deleted");
    assert_eq!(found(&app, one("AllTextAttributes", None, "kilo4 ")).await, set(&[&urls[4]]));

    // The newest object goes; the next one takes its id (SQLite hands out the highest id
    // again) and must be found by its own text only.
    let newest = object(&app, "/t", &[("Subject", "zulu")], &[]).await;
    assert_eq!(app.delete(&newest).await.status(), 204);
    let next = object(&app, "/t", &[("Subject", "yankee")], &[]).await;
    assert_eq!(found(&app, one("WholeWord", None, "zulu")).await, set(&[]));
    assert_eq!(found(&app, one("AllTextAttributes", None, "ulu")).await, set(&[]));
    assert_eq!(found(&app, one("WholeWord", None, "yankee")).await, set(&[&next]));

    if app.db.is_none() {
        use sqlx::Connection as _;
        let url = format!("sqlite://{}", app.data.path().join("nms.db").display());
        let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
        for index in ["object_text", "object_words"] {
            let check = format!("INSERT INTO {index} ({index}) VALUES ('integrity-check')");
            sqlx::query(sqlx::AssertSqlSafe(check)).execute(&mut db).await.unwrap_or_else(|e| panic!("{index}: {e}"));
        }
        let queued: i64 =
            sqlx::query_scalar("SELECT count(*) FROM object_search_queue").fetch_one(&mut db).await.unwrap();
        assert_eq!(queued, 0, "nothing stays queued once committed");
    }
}
