//! The XML binding: content negotiation, XML request documents (whole bodies and multipart
//! root parts), XML answers that validate against the OMA schemas and carry the JSON view's
//! data, and hostile XML refused with an OMA body.

use std::path::PathBuf;
use std::process::Command;

use nms_conformance::xml::to_json;
use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::helpers::{ALICE, TestApp, enc, form, spawn_app, spawn_app_with};

const NMS_NS: &str = "urn:oma:xml:rest:netapi:nms:1";
const COMMON_NS: &str = "urn:oma:xml:rest:netapi:common:1";
const NC_NS: &str = "urn:oma:xml:rest:netapi:notificationchannel:1";

/// The OMA schemas, copied into the repository, with a catalog resolving their imports offline.
fn xsd_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/api/xsd")
}

/// Validate `xml` with `xmllint` against the NMS schema (which imports the common one, so
/// `requestError` validates too).
pub(crate) fn assert_valid(xml: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("doc.xml");
    std::fs::write(&file, xml).expect("write");
    let out = Command::new("xmllint")
        .env("XML_CATALOG_FILES", xsd_dir().join("catalog.xml"))
        .args(["--nonet", "--noout", "--schema"])
        .arg(xsd_dir().join("OMA-SUP-XSD_rest_netapi_nms-V1_0-20140619-D.xsd"))
        .arg(&file)
        .output()
        .expect("xmllint (Debian: libxml2-utils) must be installed");
    assert!(out.status.success(), "{xml}\ndoes not validate: {}", String::from_utf8_lossy(&out.stderr));
}

impl TestApp {
    fn xml_req(&self, method: Method, url: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, url)
            .basic_auth("alice", Some(crate::helpers::PW))
            .header("Accept", "application/xml")
    }

    async fn send_xml(&self, method: Method, url: &str, doc: &str) -> Response {
        self.xml_req(method, url)
            .header("Content-Type", "application/xml")
            .body(doc.to_string())
            .send()
            .await
            .expect("send")
    }

    /// Send the document `<nms:{root}>{inner}</nms:{root}>` asking for XML; the answer must
    /// have `status`; returns it read back into the JSON shape (`null` when empty).
    async fn nms_doc(&self, method: Method, url: &str, root: &str, inner: &str, status: u16) -> Value {
        let doc = format!("<?xml version=\"1.0\"?>\n<nms:{root} xmlns:nms=\"{NMS_NS}\">{inner}</nms:{root}>");
        let res = self.send_xml(method, url, &doc).await;
        let got = res.status().as_u16();
        let text = res.text().await.expect("text");
        assert_eq!(got, status, "{doc}\n-> {text}");
        if text.is_empty() { Value::Null } else { to_json(text.as_bytes()).expect("XML answer") }
    }

    /// The same request answered in JSON and in XML: (status, JSON, XML text).
    async fn both(&self, method: Method, url: &str, body: Option<Value>) -> (u16, Value, String) {
        let mut json = self.req(method.clone(), url);
        let mut xml = self.xml_req(method, url);
        if let Some(b) = body {
            json = json.json(&b);
            xml = xml.json(&b);
        }
        let json = json.send().await.expect("send");
        let status = json.status().as_u16();
        let json: Value = json.json().await.expect("json");
        let xml = xml.send().await.expect("send");
        assert_eq!(xml.status().as_u16(), status, "same status in XML");
        assert_eq!(content_type(&xml), "application/xml");
        (status, json, xml.text().await.expect("text"))
    }
}

fn content_type(res: &Response) -> String {
    res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

/// `{"name": value}` lists what members of `v` to drop, recursively, before comparing.
fn without(mut v: Value, names: &[&str]) -> Value {
    fn walk(v: &mut Value, names: &[&str]) {
        match v {
            Value::Object(m) => {
                m.retain(|k, _| !names.contains(&k.as_str()));
                m.values_mut().for_each(|x| walk(x, names));
            }
            Value::Array(a) => a.iter_mut().for_each(|x| walk(x, names)),
            _ => {}
        }
    }
    walk(&mut v, names);
    v
}

/// The XML answer validates and carries exactly the JSON answer's data (read back with the
/// schema's lists and numbers); `ignored` members (which may change between two requests,
/// or which the schema has no element for) are left out of the comparison.
fn assert_same(json: &Value, xml: &str, ignored: &[&str]) {
    assert_valid(xml);
    let back = to_json(xml.as_bytes()).expect("XML reads back");
    assert_eq!(without(back, ignored), without(json.clone(), ignored), "XML:\n{xml}");
}

/// Fetch `url` in both formats and compare.
async fn check(app: &TestApp, method: Method, url: &str, body: Option<Value>, ignored: &[&str]) -> Value {
    let (_, json, xml) = app.both(method, url, body).await;
    assert_same(&json, &xml, ignored);
    json
}

#[tokio::test]
async fn every_nms_document_validates_and_matches_its_json() {
    let app = spawn_app().await;
    let base = app.base(ALICE);
    let root = app.root().await;
    // folder (the root, and one with an attribute and subfolders) and its name.
    check(&app, Method::GET, &root, None, &[]).await;
    let folder = app.create_folder(json!({"parentFolderPath": "/", "name": "x & <y>"})).await;
    app.create_folder(json!({"parentFolder": folder, "name": "sub"})).await;
    check(&app, Method::GET, &folder, None, &[]).await;
    check(&app, Method::GET, &format!("{folder}/folderName"), None, &[]).await;
    // object with payload parts (the CPM members the schema lacks are not in the XML).
    let (ct, body) = form()
        .root_fields(&json!({"parentFolder": folder, "flags": {"flag": ["\\Seen"]},
            "attributes": {"attribute": [{"name": "Subject", "value": ["hi"]}]}}))
        .part(
            &[
                ("Content-Disposition", "attachment; filename=\"a.txt\""),
                ("Content-Type", "text/plain"),
                ("Content-ID", "<a@x>"),
            ],
            b"hello",
        )
        .finish("multipart/form-data");
    let res = app.deposit(&ct, body).await;
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await.expect("json");
    let object = created["reference"]["resourceURL"].as_str().expect("url").to_string();
    let cpm_only = ["contentDisposition", "contentEncoding", "fileIcon"];
    let json = check(&app, Method::GET, &object, None, &cpm_only).await;
    assert!(json["object"]["payloadPart"].is_array(), "{json}");
    // flagList, an absent flag's empty document, references, lists and bulk responses.
    check(&app, Method::GET, &format!("{object}/flags"), None, &[]).await;
    let (status, json, xml) = app.both(Method::GET, &format!("{object}/flags/%24none"), None).await;
    assert_eq!(status, 404);
    assert_eq!(json, json!({"empty": null}));
    assert_same(&json, &xml, &[]);
    check(&app, Method::GET, &format!("{base}/folders/operations/pathToId"), None, &[]).await;
    check(
        &app,
        Method::POST,
        &format!("{base}/folders/operations/pathToId"),
        Some(json!({"pathList": {"path": ["/x & <y>", "/nope"]}})),
        &[],
    )
    .await;
    let search = json!({"selectionCriteria": {"maxEntries": 10}});
    check(&app, Method::POST, &format!("{base}/objects/operations/search"), Some(search.clone()), &cpm_only).await;
    check(&app, Method::POST, &format!("{base}/folders/operations/search"), Some(search), &[]).await;
    let update = json!({"bulkUpdate": {"objects": {"objectReference": [{"resourceURL": object}]},
        "operation": "AddFlag", "flags": {"flag": ["\\Flagged"]}}});
    check(&app, Method::POST, &format!("{base}/objects/operations/bulkUpdate"), Some(update), &[]).await;
    // Subscriptions (`duration` counts down between the two requests).
    let subs = format!("{base}/subscriptions");
    let sub = json!({"nmsSubscription": {"callbackReference": {"notifyURL": "https://example.com/cb",
        "callbackData": "cb"}, "duration": 3600, "clientCorrelator": "c1"}});
    let res = app.post_json(&subs, sub).await;
    assert_eq!(res.status(), 201);
    let sub_url = res.headers()["location"].to_str().expect("location").to_string();
    check(&app, Method::GET, &sub_url, None, &["duration"]).await;
    check(&app, Method::GET, &subs, None, &["duration"]).await;
    // Errors: the common schema's requestError, with its variables.
    let (status, json, xml) = app.both(Method::GET, &format!("{base}/objects/nope"), None).await;
    assert_eq!(status, 404);
    assert!(xml.contains(COMMON_NS), "{xml}");
    assert_same(&json, &xml, &[]);
}

#[tokio::test]
async fn notification_channels_and_notifications_in_xml() {
    let app = spawn_app_with(|s| s.sync.long_poll_secs = 1).await;
    let channels = format!("{}/notificationchannel/v1/{}/channels", app.url, enc(ALICE));
    // Created from the NC specification's own XML example (xsi:type on channelData).
    let doc = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<nc:notificationChannel xmlns:nc=\"{NC_NS}\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><clientCorrelator>123</clientCorrelator>\
         <applicationTag>myApp</applicationTag><channelType>LongPolling</channelType>\
         <channelData xsi:type=\"nc:LongPollingData\"><maxNotifications>1</maxNotifications></channelData>\
         <channelLifetime>7200</channelLifetime></nc:notificationChannel>"
    );
    let res = app.send_xml(Method::POST, &channels, &doc).await;
    assert_eq!(res.status(), 201);
    let xml = res.text().await.expect("text");
    assert!(xml.contains(&format!("<nc:notificationChannel xmlns:nc=\"{NC_NS}\"")), "{xml}");
    assert!(xml.contains("<channelData xsi:type=\"nc:LongPollingData\">"), "{xml}");
    let created = to_json(xml.as_bytes()).expect("reads back");
    let channel = &created["notificationChannel"];
    assert_eq!(channel["clientCorrelator"], "123");
    assert_eq!(channel["channelData"]["maxNotifications"], 1);
    // The specification's element order.
    let order: Vec<usize> = [
        "<clientCorrelator>",
        "<applicationTag>",
        "<channelType>",
        "<channelData",
        "<channelLifetime>",
        "<callbackURL>",
        "<resourceURL>",
    ]
    .iter()
    .map(|t| xml.find(t).unwrap_or_else(|| panic!("{t} in {xml}")))
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{xml}");
    let url = channel["resourceURL"].as_str().expect("url").to_string();
    let (_, json, xml) = app.both(Method::GET, &url, None).await;
    assert_eq!(
        without(to_json(xml.as_bytes()).expect("xml"), &["channelLifetime"]),
        without(json, &["channelLifetime"])
    );
    // The list (with a second channel): in XML always the NC spec's form (NC 5.2.2.1,
    // example 6.1.3.1), the channels and then the list's own resourceURL, for every
    // listFormat; its data is that of the JSON `?listFormat=nc`.
    let second = json!({"notificationChannel": {"channelType": "LongPolling", "channelData": {}}});
    assert_eq!(app.post_json(&channels, second).await.status(), 201);
    let nc_json: Value = app.get(&format!("{channels}?listFormat=nc")).await.json().await.expect("json");
    assert_eq!(nc_json["notificationChannelList"]["notificationChannel"].as_array().map(Vec::len), Some(2));
    for query in ["", "?listFormat=nc", "?listFormat=deployed"] {
        let (status, _, xml) = app.both(Method::GET, &format!("{channels}{query}"), None).await;
        assert_eq!(status, 200);
        assert!(
            xml.contains(&format!(
                "<nc:notificationChannelList xmlns:nc=\"{NC_NS}\" \
                 xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><notificationChannel>"
            )),
            "{query}: {xml}"
        );
        assert!(
            xml.ends_with(&format!(
                "</notificationChannel><resourceURL>{channels}</resourceURL></nc:notificationChannelList>"
            )),
            "{query}: {xml}"
        );
        assert_eq!(xml.matches("<channelData xsi:type=\"nc:LongPollingData\">").count(), 2, "{xml}");
        assert_eq!(
            without(to_json(xml.as_bytes()).expect("xml"), &["channelLifetime"]),
            without(nc_json.clone(), &["channelLifetime"]),
            "{query}"
        );
    }
    // The lifetime, renewed from an XML document.
    let doc = format!(
        "<nc:notificationChannelLifetime xmlns:nc=\"{NC_NS}\"><channelLifetime>600</channelLifetime></nc:notificationChannelLifetime>"
    );
    let res = app.send_xml(Method::PUT, &format!("{url}/channelLifetime"), &doc).await;
    assert_eq!(res.status(), 200);
    let v = to_json(res.text().await.expect("text").as_bytes()).expect("xml");
    assert_eq!(v, json!({"notificationChannelLifetime": {"channelLifetime": 600}}));

    // A subscription onto the channel (XML), a change, and the notification in XML: the
    // nmsEventList inside the notificationList validates against the NMS schema.
    let doc = format!(
        "<nms:nmsSubscription xmlns:nms=\"{NMS_NS}\"><callbackReference><notifyURL>{}</notifyURL>\
         <callbackData>abc</callbackData></callbackReference><duration>3600</duration></nms:nmsSubscription>",
        channel["callbackURL"].as_str().expect("callbackURL")
    );
    let res = app.send_xml(Method::POST, &format!("{}/subscriptions", app.base(ALICE)), &doc).await;
    assert_eq!(res.status(), 201);
    let sub = to_json(res.text().await.expect("text").as_bytes()).expect("xml");
    assert_eq!(sub["nmsSubscription"]["callbackReference"]["callbackData"], "abc");
    let folder = app.create_folder(json!({"parentFolderPath": "/", "name": "n"})).await;
    let lists = poll_xml_lists(&app, channel["channelData"]["channelURL"].as_str().expect("channelURL")).await;
    let first = to_json(lists[0].as_bytes()).expect("xml");
    let list = &first["nmsEventList"];
    assert_eq!(list["callbackData"], "abc");
    let changed: Vec<&Value> =
        list["nmsEvent"].as_array().expect("events").iter().filter_map(|e| e.get("changedFolder")).collect();
    assert!(changed.iter().any(|c| c["resourceURL"] == folder.as_str()), "{list}");
}

/// The `nmsEventList` documents of a channel's pending notifications, polled in XML (each
/// validated against the NMS schema); polls until one arrives.
async fn poll_xml_lists(app: &TestApp, channel_url: &str) -> Vec<String> {
    for _ in 0..5 {
        let res = app.send_xml(Method::POST, channel_url, "").await;
        assert_eq!(res.status(), 200);
        let xml = res.text().await.expect("text");
        assert!(xml.contains(&format!("<nc:notificationList xmlns:nc=\"{NC_NS}\"")), "{xml}");
        if let (Some(a), Some(b)) = (xml.find("<nms:nmsEventList"), xml.rfind("</nms:nmsEventList>")) {
            let lists: Vec<String> = xml[a..b + "</nms:nmsEventList>".len()]
                .split_inclusive("</nms:nmsEventList>")
                .map(String::from)
                .collect();
            lists.iter().for_each(|l| assert_valid(l));
            return lists;
        }
    }
    panic!("no notification on {channel_url}");
}

#[tokio::test]
async fn the_root_folders_change_is_valid_xml() {
    // NMS 5.3.2.28 requires ChangedFolder's parentFolder; the root has none (5.3.2.8).
    let app = spawn_app_with(|s| {
        s.sync.long_poll_secs = 1;
        s.nms.forbid_root_rename = false;
    })
    .await;
    let channels = format!("{}/notificationchannel/v1/{}/channels", app.url, enc(ALICE));
    let res = app
        .post_json(&channels, json!({"notificationChannel": {"channelType": "LongPolling", "channelData": {}}}))
        .await;
    assert_eq!(res.status(), 201);
    let channel: Value = res.json().await.expect("json");
    let channel = &channel["notificationChannel"];
    let sub = json!({"nmsSubscription": {"callbackReference": {"notifyURL": channel["callbackURL"]}}});
    assert_eq!(app.post_json(&format!("{}/subscriptions", app.base(ALICE)), sub).await.status(), 201);
    let root = app.root().await;
    assert_eq!(app.put_json(&format!("{root}/folderName"), json!({"name": "top"})).await.status(), 200);
    let lists = poll_xml_lists(&app, channel["channelData"]["channelURL"].as_str().expect("channelURL")).await;
    let expected = format!("<changedFolder><parentFolder/><resourceURL>{root}</resourceURL><name>top</name>");
    assert!(lists.iter().any(|l| l.contains(&expected)), "{lists:?}");
}

#[tokio::test]
async fn xml_request_documents_are_read() {
    let app = spawn_app().await;
    let base = app.base(ALICE);
    let url_of = |v: &Value| v["reference"]["resourceURL"].as_str().expect("resourceURL").to_string();
    // A folder with an attribute (pretty-printed, an escaped name), then its rename.
    let inner = "\n  <parentFolderPath>/</parentFolderPath>\n  <name>in &amp; out</name>\n  <attributes>\n    \
                 <attribute><name>Color</name><value>red</value></attribute>\n  </attributes>\n";
    let folder = url_of(&app.nms_doc(Method::POST, &format!("{base}/folders"), "folder", inner, 201).await);
    let f: Value = app.get(&folder).await.json().await.expect("json");
    assert_eq!(f["folder"]["name"], "in & out");
    let attrs = f["folder"]["attributes"]["attribute"].as_array().expect("attributes");
    assert!(attrs.iter().any(|a| a["name"] == "Color" && a["value"] == json!(["red"])), "{f}");
    app.nms_doc(Method::PUT, &format!("{folder}/folderName"), "name", "renamed", 200).await;
    // An object without payload: empty attributes, one flag, a correlation id.
    let inner = format!(
        "<parentFolder>{folder}</parentFolder><attributes/><flags><flag>\\Seen</flag></flags>\
         <correlationId>c-1</correlationId>"
    );
    let object = url_of(&app.nms_doc(Method::POST, &format!("{base}/objects"), "object", &inner, 201).await);
    let o: Value = app.get(&object).await.json().await.expect("json");
    assert_eq!(o["object"]["flags"]["flag"], json!(["\\Seen"]));
    assert_eq!(o["object"]["correlationId"], "c-1");
    // Flags replaced from an XML flagList (two flags), then from an empty one.
    let flags = format!("{object}/flags");
    app.nms_doc(Method::PUT, &flags, "flagList", "<flag>\\Flagged</flag><flag>$Label</flag>", 200).await;
    let v: Value = app.get(&flags).await.json().await.expect("json");
    assert_eq!(v["flagList"]["flag"], json!(["\\Flagged", "$Label"]));
    // A search: numbers as text, one criterion.
    let inner = "<maxEntries>5</maxEntries><searchCriteria><criterion><type>Flag</type><name>$Label</name>\
                 <value>true</value></criterion></searchCriteria>";
    let found =
        app.nms_doc(Method::POST, &format!("{base}/objects/operations/search"), "selectionCriteria", inner, 200).await;
    let list = found["objectList"]["object"].as_array().expect("objects");
    assert_eq!(list.len(), 1, "{found}");
    assert_eq!(list[0]["resourceURL"], object.as_str());
    let v = app.nms_doc(Method::PUT, &flags, "flagList", "", 200).await;
    assert_eq!(v["flagList"]["flag"], json!([]));
    // pathToId with a one-path pathList.
    let url = format!("{base}/folders/operations/pathToId");
    let v = app.nms_doc(Method::POST, &url, "pathList", "<path>/renamed</path>", 200).await;
    assert_eq!(v["bulkResponseList"]["response"][0]["success"]["resourceURL"], folder.as_str());
    // A bulk delete of that object.
    let inner = format!("<objects><objectReference><resourceURL>{object}</resourceURL></objectReference></objects>");
    app.nms_doc(Method::POST, &format!("{base}/objects/operations/bulkDelete"), "bulkDelete", &inner, 200).await;
    assert_eq!(app.get(&object).await.status(), 404);
}

#[tokio::test]
async fn multipart_deposits_take_xml_root_fields() {
    let app = spawn_app().await;
    let folder = app.create_folder(json!({"parentFolderPath": "/", "name": "fld"})).await;
    // NMS 6.1.5.1: XML root fields, a text and an image payload part.
    let root = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<nms:object xmlns:nms=\"{NMS_NS}\">\n  <parentFolder>{folder}</parentFolder>\n  <attributes/>\n  <flags>\n      <flag>\\Seen</flag>\n      <flag>\\Flagged</flag>\n  </flags>\n</nms:object>"
    );
    for root_type in ["application/xml", "text/xml", "application/vnd.oma.nms+xml"] {
        let (ct, body) = form()
            .part(
                &[("Content-Disposition", "form-data; name=\"root-fields\""), ("Content-Type", root_type)],
                root.as_bytes(),
            )
            .part(
                &[("Content-Disposition", "form-data; name=\"attachments\""), ("Content-Type", "text/plain")],
                b"See attached photo",
            )
            .finish("multipart/form-data");
        let o = app.deposit_and_get(&ct, body).await;
        assert_eq!(o["flags"]["flag"], json!(["\\Seen", "\\Flagged"]), "{root_type}");
        assert_eq!(o["parentFolder"], folder.as_str());
        assert_eq!(o["payloadPart"][0]["contentType"], "text/plain");
    }
    // bulkCreation with an XML objectList: one object with one attribute, one with none.
    let list = format!(
        "<nms:objectList xmlns:nms=\"{NMS_NS}\"><object><parentFolder>{folder}</parentFolder><attributes><attribute><name>Subject</name><value>one</value></attribute></attributes><flags><flag>\\Seen</flag></flags></object><object><parentFolder>{folder}</parentFolder><attributes/></object></nms:objectList>"
    );
    let (ct, body) = form()
        .part(
            &[("Content-Disposition", "form-data; name=\"root-fields\""), ("Content-Type", "application/xml")],
            list.as_bytes(),
        )
        .part(&[("Content-Disposition", "form-data; name=\"attachments\""), ("Content-Type", "text/plain")], b"1")
        .part(&[("Content-Disposition", "form-data; name=\"attachments\""), ("Content-Type", "text/plain")], b"2")
        .finish("multipart/form-data");
    let res = app
        .xml_req(Method::POST, &format!("{}/objects/operations/bulkCreation", app.base(ALICE)))
        .header("Content-Type", ct)
        .body(body)
        .send()
        .await
        .expect("send");
    let status = res.status().as_u16();
    let xml = res.text().await.expect("text");
    assert!(status == 200 || status == 201, "{status} {xml}");
    assert_valid(&xml);
    let v = to_json(xml.as_bytes()).expect("xml");
    let responses = v["bulkResponseList"]["response"].as_array().expect("responses");
    assert_eq!(responses.len(), 2, "{v}");
    let first = responses[0]["success"]["resourceURL"].as_str().expect("created");
    let o: Value = app.get(first).await.json().await.expect("json");
    assert_eq!(
        o["object"]["attributes"]["attribute"]
            .as_array()
            .expect("attrs")
            .iter()
            .find(|a| a["name"] == "Subject")
            .expect("Subject")["value"],
        json!(["one"])
    );
    assert_eq!(o["object"]["flags"]["flag"], json!(["\\Seen"]));
}

#[tokio::test]
async fn hostile_or_broken_xml_is_refused_with_an_oma_body() {
    let app = spawn_app_with(|s| s.limits.max_json_bytes = 64 * 1024).await;
    let url = format!("{}/folders", app.base(ALICE));
    let lol = "<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\"><!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">]>\n<nms:folder xmlns:nms=\"urn:oma:xml:rest:netapi:nms:1\"><parentFolderPath>/</parentFolderPath><name>&lol3;</name></nms:folder>";
    let xxe = "<?xml version=\"1.0\"?>\n<!DOCTYPE folder [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>\n<folder><parentFolderPath>/</parentFolderPath><name>&xxe;</name></folder>";
    let lower = "<?xml version=\"1.0\"?>\n<!doctype folder [<!entity xxe system \"file:///etc/passwd\">]>\n<folder><parentFolderPath>/</parentFolderPath><name>&xxe;</name></folder>";
    let undeclared = "<folder><parentFolderPath>/</parentFolderPath><name>&xxe;</name></folder>";
    let deep = format!("<folder>{}{}</folder>", "<a>".repeat(200), "</a>".repeat(200));
    let malformed = "<folder><name>x</folder>";
    let wrong_root = "<object><parentFolderPath>/</parentFolderPath></object>";
    let two_roots = "<folder><name>x</name></folder><folder/>";
    let not_utf8: &[u8] = b"<folder><parentFolderPath>/</parentFolderPath><name>\xff</name></folder>";
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("billion laughs", lol.into()),
        ("external entity", xxe.into()),
        ("doctype in lower case", lower.into()),
        ("undeclared entity", undeclared.into()),
        ("deep nesting", deep.into_bytes()),
        ("malformed", malformed.into()),
        ("wrong root", wrong_root.into()),
        ("two roots", two_roots.into()),
        ("not UTF-8", not_utf8.to_vec()),
    ];
    for (what, body) in cases {
        // Asked for XML, the refusal is XML; else JSON.
        let res = app
            .xml_req(Method::POST, &url)
            .header("Content-Type", "application/xml")
            .body(body.clone())
            .send()
            .await
            .expect("send");
        assert_eq!(res.status(), 400, "{what}");
        let xml = res.text().await.expect("text");
        assert_valid(&xml);
        let v = to_json(xml.as_bytes()).expect("xml");
        assert_eq!(v["requestError"]["serviceException"]["messageId"], "SVC0002", "{what}: {v}");
        let res = app
            .req(Method::POST, &url)
            .header("Content-Type", "application/xml")
            .body(body)
            .send()
            .await
            .expect("send");
        crate::helpers::assert_error(res, 400, "SVC0002").await;
    }
    // Bounded like JSON: larger than limits.max_json_bytes is 413.
    let big = format!("<folder><parentFolderPath>/</parentFolderPath><name>{}</name></folder>", "x".repeat(70 * 1024));
    let res =
        app.xml_req(Method::POST, &url).header("Content-Type", "application/xml").body(big).send().await.expect("send");
    assert_eq!(res.status(), 413);
    assert_valid(&res.text().await.expect("text"));
    // Nothing was created.
    let root: Value = app.get(&format!("{}?listFilter=All", app.root().await)).await.json().await.expect("json");
    assert_eq!(root["folder"]["subFolders"]["folderReference"], json!([]));
}

#[tokio::test]
async fn json_stays_the_default_and_the_rule_holds_everywhere() {
    let app = spawn_app().await;
    let root = app.root().await;
    for accept in [None, Some("*/*"), Some("application/json"), Some("application/json, application/xml")] {
        let mut req = app.client.get(&root).basic_auth("alice", Some(crate::helpers::PW));
        if let Some(a) = accept {
            req = req.header("Accept", a);
        }
        let res = req.send().await.expect("send");
        assert!(content_type(&res).starts_with("application/json"), "{accept:?}");
        // The format follows Accept: a cache must not hand one client's to another.
        let vary: Vec<String> = res
            .headers()
            .get_all("vary")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|v| v.trim().to_ascii_lowercase())
            .collect();
        assert!(vary.iter().any(|v| v == "accept"), "Vary: {vary:?}");
    }
    for accept in ["application/xml", "text/xml", "application/json;q=0.5, application/xml"] {
        let res = app
            .client
            .get(&root)
            .basic_auth("alice", Some(crate::helpers::PW))
            .header("Accept", accept)
            .send()
            .await
            .expect("send");
        assert_eq!(content_type(&res), "application/xml", "{accept}");
        assert!(res.text().await.expect("text").contains(&format!("<nms:folder xmlns:nms=\"{NMS_NS}\">")));
    }
    // Refusals before any handler runs are XML too: 401, 405, 415 and an unknown path.
    let base = app.base(ALICE);
    let refusals = [
        (app.client.get(&root).header("Accept", "application/xml").send().await.expect("send"), 401),
        (app.xml_req(Method::PATCH, &root).send().await.expect("send"), 405),
        (
            app.xml_req(Method::POST, &format!("{base}/folders"))
                .header("Content-Type", "text/plain")
                .body("x")
                .send()
                .await
                .expect("send"),
            415,
        ),
        (app.xml_req(Method::GET, &format!("{}/nowhere", app.url)).send().await.expect("send"), 404),
    ];
    for (res, status) in refusals {
        assert_eq!(res.status(), status);
        assert_eq!(content_type(&res), "application/xml", "{status}");
        let xml = res.text().await.expect("text");
        assert!(xml.contains(&format!("<common:requestError xmlns:common=\"{COMMON_NS}\">")), "{xml}");
        assert_valid(&xml);
    }
    // A stored payload is answered as stored, JSON or not.
    let folder = app.create_folder(json!({"parentFolderPath": "/", "name": "p"})).await;
    let (ct, body) = form()
        .root_fields(&json!({"parentFolder": folder}))
        .part(
            &[("Content-Disposition", "attachment"), ("Content-Type", "application/json")],
            br#"{"name":"not a document"}"#,
        )
        .finish("multipart/form-data");
    let o = app.deposit_and_get(&ct, body).await;
    let payload = o["payloadURL"].as_str().expect("payloadURL");
    let res = app.xml_req(Method::GET, payload).send().await.expect("send");
    assert_eq!(res.status(), 200);
    assert!(content_type(&res).starts_with("application/json"));
    assert_eq!(res.text().await.expect("text"), r#"{"name":"not a document"}"#);
    // Documents that are not OMA ones (health) stay JSON.
    let res =
        app.client.get(format!("{}/health", app.url)).header("Accept", "application/xml").send().await.expect("send");
    assert!(content_type(&res).starts_with("application/json"));
}

/// An empty repeated text element (`<value/>`, `<value></value>`, `<flag/>`) is the empty
/// string, in a single deposit and in a bulkCreation objectList (whose objects are read
/// without their type's hints) alike: an empty attribute value is stored as `""` either
/// way, an empty flag refused alike.
#[tokio::test]
async fn empty_elements_read_alike_singly_and_in_bulk_creation() {
    let app = spawn_app().await;
    let base = app.base(ALICE);
    let folder = app.create_folder(json!({"parentFolderPath": "/", "name": "fld"})).await;
    let single = |inner: &str| format!("<parentFolder>{folder}</parentFolder>{inner}");
    let bulk_url = format!("{base}/objects/operations/bulkCreation");
    let attributes = "<attributes><attribute><name>Subject</name><value/></attribute>\
                      <attribute><name>Note</name><value></value><value>b</value></attribute></attributes>\
                      <flags><flag>\\Seen</flag></flags>";
    let one = app.nms_doc(Method::POST, &format!("{base}/objects"), "object", &single(attributes), 201).await;
    let one = one["reference"]["resourceURL"].as_str().expect("resourceURL").to_string();
    let inner = format!("<object>{}</object>", single(attributes));
    let list = app.nms_doc(Method::POST, &bulk_url, "objectList", &inner, 200).await;
    let created = &list["bulkResponseList"]["response"][0];
    assert_eq!(created["code"], 201, "{list}");
    let many = created["success"]["resourceURL"].as_str().expect("resourceURL");
    let one: Value = app.get(&one).await.json().await.expect("json");
    let many: Value = app.get(many).await.json().await.expect("json");
    let ignored = ["resourceURL", "path", "lastModSeq"];
    assert_eq!(without(many, &ignored), without(one.clone(), &ignored));
    let attrs = one["object"]["attributes"]["attribute"].as_array().expect("attributes");
    let value_of = |name: &str| attrs.iter().find(|a| a["name"] == name).map(|a| a["value"].clone());
    assert_eq!(value_of("Subject"), Some(json!([""])), "{one}");
    assert_eq!(value_of("Note"), Some(json!(["", "b"])), "{one}");
    // An empty flag: the same refusal singly and as the bulk item.
    let flags = "<flags><flag/></flags>";
    let refused = app.nms_doc(Method::POST, &format!("{base}/objects"), "object", &single(flags), 400).await;
    let inner = format!("<object>{}</object>", single(flags));
    let list = app.nms_doc(Method::POST, &bulk_url, "objectList", &inner, 400).await;
    assert_eq!(list["bulkResponseList"]["response"][0]["failure"], refused["requestError"], "{list}");
    // Empty single text members of an object: the same object singly and in bulk.
    let members = single("<correlationTag/><correlationId></correlationId>");
    let one = app.nms_doc(Method::POST, &format!("{base}/objects"), "object", &members, 201).await;
    let one = one["reference"]["resourceURL"].as_str().expect("resourceURL").to_string();
    let list = app.nms_doc(Method::POST, &bulk_url, "objectList", &format!("<object>{members}</object>"), 200).await;
    let many = list["bulkResponseList"]["response"][0]["success"]["resourceURL"].as_str().expect("resourceURL");
    let one: Value = app.get(&one).await.json().await.expect("json");
    let many: Value = app.get(many).await.json().await.expect("json");
    assert_eq!(without(many, &ignored), without(one, &ignored));
    // An empty parentFolder names no folder: the same refusal singly and as the bulk item.
    let nowhere = "<parentFolder/>";
    let refused = app.nms_doc(Method::POST, &format!("{base}/objects"), "object", nowhere, 400).await;
    let list = app.nms_doc(Method::POST, &bulk_url, "objectList", &format!("<object>{nowhere}</object>"), 400).await;
    assert_eq!(list["bulkResponseList"]["response"][0]["failure"], refused["requestError"], "{list}");
}
