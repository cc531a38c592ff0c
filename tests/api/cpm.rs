//! CPM semantics on deposit (CPM binding 5.3, 6.5, 7.4): CPIM decoding, Message-Context,
//! Direction and Is-CPM-Group checks, SMS payloads, correlation ids, non-CPM flags.

use serde_json::{Value, json};

use crate::helpers::*;

/// A deposit: root fields and one `attachments` payload of `content_type`.
fn body(root: Value, content_type: &str, payload: &[u8]) -> (String, Vec<u8>) {
    form()
        .root_fields(&root)
        .part(&[("Content-Type", content_type), ("Content-Disposition", "form-data; name=\"attachments\"")], payload)
        .finish("multipart/form-data")
}

fn attr(o: &Value, name: &str) -> Vec<String> {
    o["attributes"]["attribute"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["name"].as_str().unwrap().eq_ignore_ascii_case(name))
        .flat_map(|a| a["value"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()))
        .collect()
}

async fn part_bytes(app: &TestApp, o: &Value, i: usize) -> Vec<u8> {
    let href = o["payloadPart"][i]["href"].as_str().unwrap();
    app.get(href).await.bytes().await.unwrap().to_vec()
}

const GIF: &[u8] = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";

/// Appendix C's CPIM message (its `[binaryData]` a real GIF), with an IMDN Message-ID.
fn appendix_c() -> Vec<u8> {
    let mut m = b"From: MR SANDERS <im:piglet@100akerwood.com>\r\n\
        To: Dopey Donkey <im:eeyore@100akerwood.com>\r\n\
        DateTime: 2014-12-13T13:40:00-08:00\r\n\
        Subject: the weather will be fine today\r\n\
        Subject:;lang=fr beau temps prevu pour aujourd'hui\r\n\
        NS: imdn <urn:ietf:params:imdn>\r\n\
        imdn.Message-ID: 34jk324j\r\n\
        imdn.Disposition-Notification: positive-delivery, display\r\n\
        \r\n\
        Content-Type: multipart/mixed; boundary=7fekyzC-uQhXhZCGky5kU7wP\r\n\
        \r\n\
        --7fekyzC-uQhXhZCGky5kU7wP\r\n\
        Content-Disposition: attachment; filename=body.txt; name=body.txt\r\n\
        Content-Type: text/plain; charset=UTF-8\r\n\
        \r\n\
        See attached photo\r\n\
        --7fekyzC-uQhXhZCGky5kU7wP\r\n\
        Content-Disposition: attachment; filename=picture.gif; name=picture.gif\r\n\
        Content-Type: image/gif\r\n\
        \r\n"
        .to_vec();
    m.extend_from_slice(GIF);
    m.extend_from_slice(b"\r\n--7fekyzC-uQhXhZCGky5kU7wP--\r\n");
    m
}

#[tokio::test]
async fn a_cpim_deposit_is_realised_as_attributes_and_the_encapsulated_parts() {
    let app = spawn_app().await;
    let root = json!({"parentFolderPath": "/chats", "attributes": {"attribute": [
        {"name": "Message-Context", "value": ["chat-message"]},
        {"name": "Direction", "value": ["In"]},
        {"name": "Subject", "value": ["set by the depositor"]}]}});
    let (ct, b) = body(root, "message/cpim", &appendix_c());
    let o = app.deposit_and_get(&ct, b).await;
    assert_eq!(
        attr(&o, "CPIM"),
        ["From: MR SANDERS <im:piglet@100akerwood.com>\r\nTo: Dopey Donkey <im:eeyore@100akerwood.com>\r\n\
          DateTime: 2014-12-13T13:40:00-08:00\r\nSubject: the weather will be fine today\r\n\
          Subject:;lang=fr beau temps prevu pour aujourd'hui\r\nNS: imdn <urn:ietf:params:imdn>\r\n\
          imdn.Message-ID: 34jk324j\r\nimdn.Disposition-Notification: positive-delivery, display"]
    );
    assert_eq!(attr(&o, "From"), ["im:piglet@100akerwood.com"]);
    assert_eq!(attr(&o, "To"), ["im:eeyore@100akerwood.com"]);
    assert_eq!(attr(&o, "Date"), ["2014-12-13T21:40:00Z"]);
    assert_eq!(attr(&o, "Subject"), ["set by the depositor"], "attributes the depositor set win");
    assert_eq!(attr(&o, "Content-Type"), ["multipart/mixed"]);
    assert_eq!(attr(&o, "Direction"), ["In"]);
    assert_eq!(o["correlationId"], "34jk324j", "the IMDN Message-ID");
    let parts = o["payloadPart"].as_array().unwrap();
    assert_eq!(parts.len(), 2, "{o}");
    assert_eq!(parts[0]["contentType"], "text/plain; charset=UTF-8");
    assert_eq!(parts[0]["contentDisposition"], "attachment; filename=body.txt; name=body.txt");
    assert_eq!(parts[1]["contentType"], "image/gif");
    assert_eq!(part_bytes(&app, &o, 0).await, b"See attached photo");
    assert_eq!(part_bytes(&app, &o, 1).await, GIF);
    // The text of the body is searchable.
    let (status, v) = app
        .post_rel("/objects/operations/search", json!({"selectionCriteria": {"maxEntries": 5, "searchCriteria": {"criterion": [{"type": "AllTextAttributes", "value": "attached photo"}]}}}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(v["objectList"]["object"].as_array().unwrap().len(), 1, "{v}");
}

#[tokio::test]
async fn a_cpim_message_with_one_body_and_a_given_correlation_id() {
    let app = spawn_app().await;
    let cpim = "From: <tel:+13105550000>\r\nTo: <tel:+12125551212>\r\nNS: imdn <urn:ietf:params:imdn>\r\n\
                imdn.Message-ID: m-77\r\nDateTime: 2026-11-27T08:00:00Z\r\n\r\n\
                Content-Type: text/plain; charset=utf-8\r\nContent-Disposition: inline\r\n\r\nsalut ça va ?";
    let root = json!({"correlationId": "given", "attributes": {"attribute": [{"name": "Message-Context", "value": ["chat-message"]}]}});
    let (ct, b) = body(root, "Message/CPIM", cpim.as_bytes());
    let o = app.deposit_and_get(&ct, b).await;
    assert_eq!(o["correlationId"], "given", "a correlationId the depositor gave wins");
    assert_eq!(attr(&o, "Content-Type"), ["text/plain; charset=utf-8"]);
    assert_eq!(attr(&o, "From"), ["tel:+13105550000"]);
    assert_eq!(attr(&o, "Date"), ["2026-11-27T08:00:00Z"]);
    let parts = o["payloadPart"].as_array().unwrap();
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0]["contentType"], "text/plain; charset=utf-8");
    assert_eq!(parts[0]["contentDisposition"], "inline");
    assert_eq!(part_bytes(&app, &o, 0).await, "salut ça va ?".as_bytes());

    // A CPIM message inside a multipart payload: decoded, the other parts kept.
    let (inner_type, inner) = nested(
        "multipart/related",
        "rel-1",
        &[(&[("Content-Type", "message/cpim")], cpim.as_bytes()), (&[("Content-Type", "image/gif")], GIF)],
    );
    let root = json!({"attributes": {"attribute": [{"name": "Message-Context", "value": ["chat-message"]}]}});
    let (ct, b) = body(root, &inner_type, &inner);
    let o = app.deposit_and_get(&ct, b).await;
    assert_eq!(o["correlationId"], "m-77");
    let parts = o["payloadPart"].as_array().unwrap();
    assert_eq!(parts.len(), 2, "{o}");
    assert_eq!(parts[0]["contentType"], "text/plain; charset=utf-8");
    assert_eq!(parts[1]["contentType"], "image/gif");
}

#[tokio::test]
async fn malformed_cpim_is_a_precise_400() {
    let app = spawn_app().await;
    let root = json!({});
    let cases: [(&[u8], &str); 5] = [
        (b"From: <a>\r\nTo: <b>\r\n", "CPIM message"),
        (b"From: <a>\r\n\r\nContent-Type: text/plain\r\n", "CPIM message"),
        (b"not a header\r\n\r\nContent-Type: text/plain\r\n\r\nx", "CPIM header line"),
        (b"DateTime: tomorrow\r\n\r\nContent-Type: text/plain\r\n\r\nx", "CPIM DateTime"),
        (b"From: <a>\r\n\r\nContent-Type: multipart/mixed\r\n\r\nx", "boundary"),
    ];
    for (payload, part) in cases {
        let (ct, b) = body(root.clone(), "message/cpim", payload);
        let v = assert_error(app.deposit(&ct, b).await, 400, "SVC0002").await;
        let text = v.to_string();
        assert!(text.contains(part), "{part}: {v}");
    }
    // An endless head is cut off.
    let mut huge = b"From: <a>\r\n".to_vec();
    huge.extend(std::iter::repeat_n(b"X-Pad: 0123456789\r\n".as_slice(), 5000).flatten());
    let (ct, b) = body(root, "message/cpim", &huge);
    let v = assert_error(app.deposit(&ct, b).await, 400, "SVC0002").await;
    assert!(v.to_string().contains("64 KiB"), "{v}");
}

#[tokio::test]
async fn sms_is_one_utf8_text_part_and_short_texts_may_be_inlined() {
    let app = spawn_app_with(|s| s.cpm.sms_inline_text_max = 20).await;
    let sms = || {
        json!({"attributes": {"attribute": [
        {"name": "Message-Context", "value": ["pager-message"]}, {"name": "Direction", "value": ["OUT"]},
        {"name": "Is-CPM-Group", "value": ["no"]}, {"name": "From", "value": ["tel:+12125551212"]}]},
        "flags": {"flag": ["\\Seen", "$CPM_SMS_Archived"]}})
    };
    let (ct, b) = body(sms(), "text/plain; charset=utf-8", "Où es-tu ?".as_bytes());
    let o = app.deposit_and_get(&ct, b).await;
    assert_eq!(attr(&o, "TextContent"), ["Où es-tu ?"], "inlined under the policy's 20 characters");
    assert_eq!(attr(&o, "Direction"), ["OUT"], "stored as given");
    assert!(o["flags"]["flag"].as_array().unwrap().iter().any(|f| f == "$CPM_SMS_Archived"));
    let long = "a".repeat(21);
    let (ct, b) = body(sms(), "text/plain", long.as_bytes());
    let o = app.deposit_and_get(&ct, b).await;
    assert!(attr(&o, "TextContent").is_empty(), "longer than the policy: not inlined");
    // Non-CPM flags are searchable.
    let (_, v) = app
        .post_rel("/objects/operations/search", json!({"selectionCriteria": {"maxEntries": 5, "searchCriteria": {"criterion": [{"type": "Flag", "name": "$CPM_SMS_Archived", "value": "true"}]}}}))
        .await;
    assert_eq!(v["objectList"]["object"].as_array().unwrap().len(), 2, "{v}");

    for (content_type, payload) in
        [("text/html", b"<p>x</p>".as_slice()), ("text/plain; charset=iso-8859-1", b"caf\xe9"), ("image/gif", GIF)]
    {
        let (ct, b) = body(sms(), content_type, payload);
        assert_error(app.deposit(&ct, b).await, 400, "SVC0002").await;
    }
    let (inner_type, inner) = nested(
        "multipart/mixed",
        "two",
        &[(&[("Content-Type", "text/plain")], b"a"), (&[("Content-Type", "text/plain")], b"b")],
    );
    let (ct, b) = body(sms(), &inner_type, &inner);
    let v = assert_error(app.deposit(&ct, b).await, 400, "SVC0002").await;
    assert!(v.to_string().contains("SMS"), "{v}");
    let res = app.post_json(&format!("{}/objects", app.base(ALICE)), json!({"object": sms()})).await;
    assert_error(res, 400, "SVC0002").await;
}

#[tokio::test]
async fn message_context_direction_and_group_are_checked() {
    let app = spawn_app().await;
    let deposit = |attrs: Value| {
        let app = &app;
        async move {
            app.post_json(
                &format!("{}/objects", app.base(ALICE)),
                json!({"object": {"attributes": {"attribute": attrs}}}),
            )
            .await
        }
    };
    let v = assert_error(deposit(json!([{"name": "Message-Context", "value": ["X-RCS-Chat"]}])).await, 400, "SVC0003")
        .await;
    assert!(v.to_string().contains("Message-Context"), "{v}");
    let v = assert_error(deposit(json!([{"name": "Direction", "value": ["sideways"]}])).await, 400, "SVC0003").await;
    assert!(v.to_string().contains("Direction"), "{v}");
    assert_error(deposit(json!([{"name": "Is-CPM-Group", "value": ["maybe"]}])).await, 400, "SVC0003").await;
    let res = deposit(json!([{"name": "Message-Context", "value": ["multimedia-message"]}, {"name": "Is-CPM-Group", "value": ["yes"]}])).await;
    assert_error(res, 400, "SVC0002").await;
    for ok in [
        json!([{"name": "message-context", "value": ["Chat-Message"]}, {"name": "Direction", "value": ["in"]}, {"name": "Is-CPM-Group", "value": ["yes"]}]),
        json!([{"name": "Message-Context", "value": ["session-info-message"]}]),
    ] {
        assert_eq!(deposit(ok.clone()).await.status(), 201, "{ok}");
    }

    // MMS: the MMS Message-ID is the correlationId when none is given.
    let (inner_type, inner) = nested(
        "multipart/related",
        "mms",
        &[(&[("Content-Type", "application/smil")], b"<smil/>"), (&[("Content-Type", "text/plain")], b"hi")],
    );
    let root = json!({"attributes": {"attribute": [{"name": "Message-Context", "value": ["multimedia-message"]},
        {"name": "Message-ID", "value": ["mms-0042"]}, {"name": "Cc", "value": ["tel:+1555", "tel:+1666"]}]}});
    let (ct, b) = body(root, &inner_type, &inner);
    let o = app.deposit_and_get(&ct, b).await;
    assert_eq!(o["correlationId"], "mms-0042");
    assert_eq!(attr(&o, "Cc"), ["tel:+1555", "tel:+1666"]);
    assert_eq!(o["payloadPart"].as_array().unwrap().len(), 2);

    // A policy may accept other contexts.
    let app = spawn_app_with(|s| s.cpm.allow_unknown_message_context = true).await;
    let res = app
        .post_json(
            &format!("{}/objects", app.base(ALICE)),
            json!({"object": {"attributes": {"attribute": [{"name": "Message-Context", "value": ["X-RCS-Chat"]}]}}}),
        )
        .await;
    assert_eq!(res.status(), 201);
}

async fn json_deposit(app: &TestApp, user: &str, object: Value) -> (u16, Value) {
    let res = app
        .req_as(user, reqwest::Method::POST, &format!("{}/objects", app.base(ALICE)))
        .json(&json!({"object": object}))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn get_object(app: &TestApp, reference: &Value) -> Value {
    let url = reference["reference"]["resourceURL"].as_str().unwrap();
    app.get(url).await.json::<Value>().await.unwrap()["object"].clone()
}

fn attrs(pairs: &[(&str, &str)]) -> Value {
    json!({"attribute": pairs.iter().map(|(n, v)| json!({"name": n, "value": [v]})).collect::<Vec<_>>()})
}

#[tokio::test]
async fn objects_without_a_parent_are_filed_by_conversation_session_and_party() {
    let app = spawn_app().await;
    // Session metadata makes the session history folder, with its attributes.
    let info = attrs(&[
        ("Message-Context", "session-info-message"),
        ("Conversation-ID", "conv-1"),
        ("Contribution-ID", "sess-1"),
    ]);
    let (status, v) = json_deposit(&app, "alice", json!({"attributes": info})).await;
    assert_eq!(status, 201, "{v}");
    let o = get_object(&app, &v).await;
    assert!(o["path"].as_str().unwrap().starts_with("/RCSMessageStore/conv-1/sess-1/"), "{o}");
    let session = app.get(o["parentFolder"].as_str().unwrap()).await.json::<Value>().await.unwrap();
    assert_eq!(attr(&session["folder"], "Conversation-ID"), ["conv-1"]);
    assert_eq!(attr(&session["folder"], "Contribution-ID"), ["sess-1"]);
    // A message of that session joins it; one of another contribution stays in the conversation.
    let chat = |contribution: &str, id: &str| json!({"correlationId": id, "attributes": attrs(&[("Message-Context", "chat-message"), ("Conversation-ID", "conv-1"), ("Contribution-ID", contribution)])});
    let (_, v) = json_deposit(&app, "alice", chat("sess-1", "msg-1")).await;
    assert!(get_object(&app, &v).await["path"].as_str().unwrap().starts_with("/RCSMessageStore/conv-1/sess-1/"));
    let (_, v) = json_deposit(&app, "alice", chat("other", "msg-2")).await;
    let o = get_object(&app, &v).await;
    let id = o["resourceURL"].as_str().unwrap().rsplit('/').next().unwrap().to_string();
    assert_eq!(o["path"], format!("/RCSMessageStore/conv-1/{id}"));
    let conv = app.get(o["parentFolder"].as_str().unwrap()).await.json::<Value>().await.unwrap();
    assert_eq!(conv["folder"]["name"], "conv-1");
    assert_eq!(attr(&conv["folder"], "Conversation-ID"), ["conv-1"]);
    // An IMDN goes beside the message it is about.
    let imdn = attrs(&[
        ("Message-Context", "imdn-message"),
        ("DispositionType", "display"),
        ("DispositionStatus", "displayed"),
        ("DispositionOriginalMessageID", "msg-1"),
        ("DispositionOriginalTo", "tel:+13105550000"),
    ]);
    let (status, v) = json_deposit(&app, "alice", json!({"attributes": imdn})).await;
    assert_eq!(status, 201, "{v}");
    assert!(get_object(&app, &v).await["path"].as_str().unwrap().starts_with("/RCSMessageStore/conv-1/sess-1/"));
    // 1-1 SMS-like exchanges (here a call log) by remote party; the network writes to /Default.
    let call = attrs(&[
        ("From", "tel:+13105550000"),
        ("To", "tel:+12125551212"),
        ("Call-Type", "voice"),
        ("Call-Disposition", "ANSWERED"),
        ("Call-Duration", "61"),
        ("Direction", "In"),
    ]);
    let (status, v) = json_deposit(&app, "pf", json!({"attributes": call})).await;
    assert_eq!(status, 201, "{v}");
    assert!(get_object(&app, &v).await["path"].as_str().unwrap().starts_with("/Default/tel:+13105550000/"));
    // Not a CPM object: the root, as before.
    let (_, v) = json_deposit(&app, "alice", json!({"attributes": attrs(&[("Subject", "plain")])})).await;
    assert_eq!(get_object(&app, &v).await["parentFolder"], app.root().await);
    // Placement can be turned off.
    let app = spawn_app_with(|s| s.cpm.placement = false).await;
    let (_, v) = json_deposit(&app, "alice", chat("sess-1", "m")).await;
    assert_eq!(get_object(&app, &v).await["parentFolder"], app.root().await);
}

#[tokio::test]
async fn imdn_and_call_log_input_is_checked_precisely() {
    let app = spawn_app().await;
    let cases: Vec<(Value, u16, &str, &str)> = vec![
        (
            attrs(&[
                ("Message-Context", "imdn-message"),
                ("DispositionType", "delivery"),
                ("DispositionStatus", "displayed"),
                ("DispositionOriginalMessageID", "m"),
                ("DispositionOriginalTo", "tel:+1"),
            ]),
            400,
            "SVC0003",
            "DispositionStatus",
        ),
        (attrs(&[("Message-Context", "imdn-message"), ("DispositionType", "delivery")]), 400, "SVC0002", "Disposition"),
        (
            attrs(&[
                ("Call-Type", "fax"),
                ("From", "tel:+1"),
                ("To", "tel:+2"),
                ("Call-Disposition", "ANSWERED"),
                ("Call-Duration", "1"),
                ("Direction", "In"),
            ]),
            400,
            "SVC0003",
            "Call-Type",
        ),
        (
            attrs(&[
                ("Call-Type", "voice"),
                ("From", "tel:+1"),
                ("To", "tel:+2"),
                ("Call-Disposition", "ANSWERED"),
                ("Direction", "In"),
            ]),
            400,
            "SVC0002",
            "Call-Duration",
        ),
        (
            attrs(&[
                ("Call-Type", "voice"),
                ("From", "tel:+1"),
                ("To", "tel:+2"),
                ("Call-Disposition", "OUTGOING ANSWERED"),
                ("Call-Duration", "3"),
                ("Direction", "In"),
            ]),
            400,
            "SVC0003",
            "Call-Disposition",
        ),
        (
            attrs(&[
                ("Call-Type", "voice"),
                ("From", "tel:+1"),
                ("To", "tel:+2"),
                ("Call-Disposition", "ANSWERED"),
                ("Call-Duration", "3"),
                ("Direction", "In"),
                ("Geolocation", "<cid:nowhere>"),
            ]),
            400,
            "SVC0002",
            "Geolocation",
        ),
    ];
    for (a, status, id, names) in cases {
        let (got, v) = json_deposit(&app, "alice", json!({"parentFolderPath": "/x", "attributes": a})).await;
        assert_eq!((got, message_id(&v)), (status, id), "{v}");
        assert!(v.to_string().contains(names), "{names}: {v}");
    }
    // A CPIM-wrapped IMDN whose XML is broken, or with a status its type does not allow.
    let wrap = |xml: &str| {
        format!(
            "From: <tel:+13105550000>\r\nTo: <tel:+12125551212>\r\nNS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: x1\r\n\r\nContent-Type: message/imdn+xml\r\n\r\n{xml}"
        )
    };
    let root = json!({"parentFolderPath": "/x", "attributes": {"attribute": [{"name": "Message-Context", "value": ["imdn-message"]}]}});
    for (xml, id) in [
        ("<imdn", "SVC0002"),
        (
            "<?xml version=\"1.0\"?><imdn xmlns=\"urn:ietf:params:xml:ns:imdn\"><message-id>m</message-id><display-notification><status><delivered/></status></display-notification></imdn>",
            "SVC0003",
        ),
    ] {
        let (ct, b) = body(root.clone(), "message/cpim", wrap(xml).as_bytes());
        assert_error(app.deposit(&ct, b).await, 400, id).await;
    }
    // An IMDN document under another Message-Context is refused.
    let ok = "<imdn xmlns=\"urn:ietf:params:xml:ns:imdn\"><message-id>m</message-id><delivery-notification><status><delivered/></status></delivery-notification></imdn>";
    let chat = json!({"parentFolderPath": "/x", "attributes": {"attribute": [{"name": "Message-Context", "value": ["chat-message"]}]}});
    let (ct, b) = body(chat, "message/cpim", wrap(ok).as_bytes());
    assert_error(app.deposit(&ct, b).await, 400, "SVC0003").await;
    let (ct, b) = body(root, "message/cpim", wrap(ok).as_bytes());
    let o = app.deposit_and_get(&ct, b).await;
    assert_eq!(attr(&o, "DispositionOriginalTo"), ["tel:+13105550000"], "the CPIM sender when the XML names none");
    assert!(o.get("payloadPart").is_none_or(|p| p.as_array().unwrap().is_empty()), "{o}");
}

#[tokio::test]
async fn session_objects_stay_while_their_session_has_messages() {
    let app = spawn_app().await;
    let dep = |context: &str, id: &str| json!({"parentFolderPath": "/c/s", "correlationId": id, "attributes": attrs(&[("Message-Context", context), ("Conversation-ID", "c"), ("Contribution-ID", "s")])});
    let url = |v: &Value| v["reference"]["resourceURL"].as_str().unwrap().to_string();
    let (_, info) = json_deposit(&app, "alice", dep("session-info-message", "i")).await;
    let (_, old_state) = json_deposit(&app, "alice", dep("group-state-message", "g1")).await;
    let (_, state) = json_deposit(&app, "alice", dep("group-state-message", "g2")).await;
    let (_, m1) = json_deposit(&app, "alice", dep("chat-message", "m1")).await;
    let (_, m2) = json_deposit(&app, "alice", dep("chat-message", "m2")).await;
    let imdn = attrs(&[
        ("Message-Context", "imdn-message"),
        ("DispositionType", "delivery"),
        ("DispositionStatus", "delivered"),
        ("DispositionOriginalMessageID", "m2"),
        ("DispositionOriginalTo", "tel:+1"),
    ]);
    let (_, imdn) = json_deposit(&app, "alice", json!({"parentFolderPath": "/c/s", "attributes": imdn})).await;
    let (info, old_state, state, m1, m2, imdn) =
        (url(&info), url(&old_state), url(&state), url(&m1), url(&m2), url(&imdn));

    // Single delete and move: refused for the session info and the latest group state.
    for o in [&info, &state] {
        let v = assert_error(app.delete(o).await, 403, "POL0001").await;
        assert!(v.to_string().contains("session"), "{v}");
    }
    let target = app.create_folder(json!({"parentFolderPath": "/", "name": "elsewhere"})).await;
    let (status, v) = app
        .post_rel("/folders/operations/moveToFolder", json!({"targetSourceRef": {"targetRef": {"resourceURL": target}, "sourceRefs": {"objects": {"objectReference": [{"resourceURL": info}, {"resourceURL": m1}]}}}}))
        .await;
    assert_eq!(status, 200, "{v}");
    let items = v["bulkResponseList"]["response"].as_array().unwrap();
    assert_eq!(
        items[0]["failure"]["serviceException"]
            .as_object()
            .or(items[0]["failure"]["policyException"].as_object())
            .map(|e| e["messageId"].clone()),
        Some(json!("POL0001")),
        "{v}"
    );
    assert!(items[1]["success"].is_object(), "{v}");
    // An older group state object may go.
    assert_eq!(app.delete(&old_state).await.status(), 204);
    // Bulk: refused per item, unless the same request takes what holds it (m2 and its IMDN
    // go with m2).
    let (status, v) = app
        .post_rel(
            "/objects/operations/bulkDelete",
            json!({"bulkDelete": {"objects": {"objectReference": [{"resourceURL": state}]}}}),
        )
        .await;
    assert_eq!(status, 403, "every item refused: {v}");
    assert!(v.to_string().contains("POL0001"), "{v}");
    let (status, v) = app
        .post_rel("/objects/operations/bulkDelete", json!({"bulkDelete": {"objects": {"objectReference": [{"resourceURL": info}, {"resourceURL": state}, {"resourceURL": m2}]}}}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert!(!v.to_string().contains("POL0001"), "{v}");
    assert_eq!(app.get(&imdn).await.status(), 404, "the IMDN of m2 went with it");
    assert_eq!(app.get(&info).await.status(), 404);

    // Selection form, and the whole folder.
    let (_, info) = json_deposit(&app, "alice", dep("session-info-message", "i2")).await;
    let (_, _m3) = json_deposit(&app, "alice", dep("chat-message", "m3")).await;
    let info = url(&info);
    let (status, v) = app
        .post_rel("/objects/operations/bulkDelete", json!({"bulkDelete": {"selectionCriteria": {"maxEntries": 10, "searchCriteria": {"criterion": [{"type": "Attribute", "name": "Message-Context", "value": "session-info-message"}]}}}}))
        .await;
    assert_eq!(status, 403, "{v}");
    assert!(v.to_string().contains("POL0001"), "{v}");
    assert_eq!(app.get(&info).await.status(), 200);
    let folder =
        app.get(&info).await.json::<Value>().await.unwrap()["object"]["parentFolder"].as_str().unwrap().to_string();
    assert_eq!(app.delete(&folder).await.status(), 204, "the whole session folder may go");
    assert_eq!(app.get(&info).await.status(), 404);
}

#[tokio::test]
async fn objects_are_fetched_by_reference() {
    let app = spawn_app().await;
    let sms = json!({"parentFolderPath": "/x", "attributes": attrs(&[("Message-Context", "pager-message"), ("Direction", "In"),
        ("From", "tel:+13105550000"), ("Conversation-ID", "conv-9"), ("Contribution-ID", "contrib-9"), ("InReplyTo-Contribution-ID", "contrib-8")])});
    let (ct, b) = body(sms, "text/plain", b"Bonjour!");
    let o = app.deposit_and_get(&ct, b).await;
    assert_eq!(o["correlationTag"], "Bonjour!", "the RCC.07 Message-Correlator of an ASCII text");
    let (ct, b) = body(json!({"parentFolderPath": "/x"}), "message/cpim", &appendix_c());
    app.deposit_and_get(&ct, b).await;
    for (name, value, hits) in [
        ("correlationId", "34jk324j", 1),
        ("CorrelationTag", "Bonjour!", 1),
        ("correlationId", "Bonjour!", 0),
        ("Conversation-ID", "conv-9", 1),
        ("Contribution-ID", "contrib-9", 1),
        ("InReplyTo-Contribution-ID", "contrib-8", 1),
    ] {
        let (status, v) = app
            .post_rel("/objects/operations/search", json!({"selectionCriteria": {"maxEntries": 5, "searchCriteria": {"criterion": [{"type": "Attribute", "name": name, "value": value}]}}}))
            .await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["objectList"]["object"].as_array().map_or(0, Vec::len), hits, "{name}={value}: {v}");
    }
    // The US-carrier hash, when configured.
    let app = spawn_app_with(|s| s.cpm.correlation_tag = cpm_nms::cpm::correlation::TagAlgorithm::UsCarrierHash).await;
    let sms = json!({"parentFolderPath": "/x", "attributes": attrs(&[("Message-Context", "pager-message"), ("Direction", "In"), ("From", "tel:+14085550100")])});
    let (ct, b) = body(sms, "text/plain", b"Hello");
    let o = app.deposit_and_get(&ct, b).await;
    assert_eq!(o["correlationTag"], "b76a2f8841e884c4", "the vector of src/cpm/correlation.rs");
}

#[tokio::test]
async fn system_folders_stay_the_networks_and_imdns_fall_back_outside_them() {
    let app = spawn_app().await;
    // The network files a chat message under /Default; the subscriber's phone then sends an
    // IMDN about it without a parent: it cannot go beside it, so it goes to the user's area.
    let chat = json!({"correlationId": "net-1", "attributes": attrs(&[("Message-Context", "chat-message"), ("Conversation-ID", "cv"), ("Direction", "In")])});
    let (status, v) = json_deposit(&app, "pf", chat).await;
    assert_eq!(status, 201, "{v}");
    assert!(get_object(&app, &v).await["path"].as_str().unwrap().starts_with("/Default/cv/"));
    let imdn = attrs(&[
        ("Message-Context", "imdn-message"),
        ("DispositionType", "display"),
        ("DispositionStatus", "displayed"),
        ("DispositionOriginalMessageID", "net-1"),
        ("DispositionOriginalTo", "tel:+12125551212"),
        ("Direction", "Out"),
    ]);
    let (status, v) = json_deposit(&app, "alice", json!({"attributes": imdn})).await;
    assert_eq!(status, 201, "{v}");
    assert!(get_object(&app, &v).await["path"].as_str().unwrap().starts_with("/RCSMessageStore/"));
    // A subscriber may neither rename nor delete the system folder.
    let default = app.get(&format!("{}/folders/operations/pathToId?path=%2FDefault", app.base(ALICE))).await;
    let default = default.json::<Value>().await.unwrap()["reference"]["resourceURL"].as_str().unwrap().to_string();
    let res = app.put_json(&format!("{default}/folderName"), json!({"name": "Mine"})).await;
    assert_error(res, 403, "POL0001").await;
    assert_error(app.delete(&default).await, 403, "POL0001").await;
    let res = app.req_as("pf", reqwest::Method::DELETE, &default).send().await.unwrap();
    assert_eq!(res.status(), 204, "the network may");
}

#[tokio::test]
async fn imdns_deleted_with_their_message_are_tracked_changes() {
    let app = spawn_app().await;
    let b = app.nms.find_box("base", ALICE).await.unwrap().unwrap();
    let (_, m) = json_deposit(&app, "alice", json!({"parentFolderPath": "/c", "correlationId": "m-1", "attributes": attrs(&[("Message-Context", "chat-message")])})).await;
    let imdn = attrs(&[
        ("Message-Context", "imdn-message"),
        ("DispositionType", "delivery"),
        ("DispositionStatus", "delivered"),
        ("DispositionOriginalMessageID", "m-1"),
        ("DispositionOriginalTo", "tel:+1"),
    ]);
    let (_, i) = json_deposit(&app, "alice", json!({"parentFolderPath": "/c", "attributes": imdn})).await;
    let token = app.nms.current_token(&b).await.unwrap();
    let m = m["reference"]["resourceURL"].as_str().unwrap().to_string();
    let i = i["reference"]["resourceURL"].as_str().unwrap().to_string();
    assert_eq!(app.delete(&m).await.status(), 204);
    let from = app.nms.open_restart_token(&b, &token).unwrap();
    let page = app.nms.replay(&b, from, 100).await.unwrap();
    let gone: Vec<String> = page
        .events
        .iter()
        .filter_map(|e| match e {
            cpm_nms::nms::sync::SyncEvent::Change(cpm_nms::model::Change::Gone(t)) => Some(t.public_id.clone()),
            _ => None,
        })
        .collect();
    let id = |u: &str| u.rsplit('/').next().unwrap().to_string();
    assert_eq!(gone, [id(&m), id(&i)], "the message and its IMDN, each a deletedObject");
}

#[tokio::test]
async fn an_expired_message_takes_its_imdns_along() {
    let app = spawn_app_with(|s| {
        s.sync.retention.insert("base".into(), cpm_nms::config::RetentionPolicy { max_age_secs: 0, max_objects: 2 });
    })
    .await;
    let (_, m) = json_deposit(&app, "alice", json!({"parentFolderPath": "/c", "correlationId": "old-1", "attributes": attrs(&[("Message-Context", "chat-message")])})).await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let (_, keep) = json_deposit(
        &app,
        "alice",
        json!({"parentFolderPath": "/c", "attributes": attrs(&[("Message-Context", "chat-message")])}),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let imdn = attrs(&[
        ("Message-Context", "imdn-message"),
        ("DispositionType", "delivery"),
        ("DispositionStatus", "delivered"),
        ("DispositionOriginalMessageID", "old-1"),
        ("DispositionOriginalTo", "tel:+1"),
    ]);
    let (_, i) = json_deposit(&app, "alice", json!({"parentFolderPath": "/c", "attributes": imdn})).await;
    // Three objects, two kept: the oldest (the message) expires, and its IMDN with it.
    assert_eq!(app.nms.expire().await.unwrap(), 1);
    let url = |v: &Value| v["reference"]["resourceURL"].as_str().unwrap().to_string();
    assert_eq!(app.get(&url(&m)).await.status(), 404);
    assert_eq!(app.get(&url(&i)).await.status(), 404, "the IMDN went with its message");
    assert_eq!(app.get(&url(&keep)).await.status(), 200);
}

#[tokio::test]
async fn a_base64_sms_is_read_for_what_it_says() {
    let app = spawn_app_with(|s| s.cpm.sms_inline_text_max = 50).await;
    let root = json!({"parentFolderPath": "/x", "attributes": attrs(&[("Message-Context", "pager-message"), ("Direction", "In"), ("From", "tel:+1555")])});
    let (ct, b) = form()
        .root_fields(&root)
        .part(
            &[
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Transfer-Encoding", "base64"),
                ("Content-Disposition", "form-data; name=\"attachments\""),
            ],
            b"Qm9uam91ciE=",
        )
        .finish("multipart/form-data");
    let o = app.deposit_and_get(&ct, b).await;
    assert_eq!(o["correlationTag"], "Bonjour!");
    assert_eq!(attr(&o, "TextContent"), ["Bonjour!"]);
    assert_eq!(part_bytes(&app, &o, 0).await, b"Qm9uam91ciE=", "stored as sent");
    let (ct, b) = form()
        .root_fields(&root)
        .part(
            &[
                ("Content-Type", "text/plain"),
                ("Content-Transfer-Encoding", "base64"),
                ("Content-Disposition", "form-data; name=\"attachments\""),
            ],
            b"not base64!",
        )
        .finish("multipart/form-data");
    assert_error(app.deposit(&ct, b).await, 400, "SVC0002").await;
}
