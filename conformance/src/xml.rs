//! The runner's XML mode: its JSON documents written as the OMA XML documents, and XML
//! answers read back into the JSON shape the checks look at.
//!
//! Reading needs what the schemas say and XML does not: which elements repeat (a list of one
//! or none is still a list), which hold numbers, and which are structures when empty. That
//! knowledge (from the NMS XSD, REST_NetAPI_Common and the Notification Channel TS) is the
//! tables below; nothing is specific to one server.

use quick_xml::events::Event;
use serde_json::{Map, Value};

/// The namespace of the NMS data types.
pub const NMS_NS: &str = "urn:oma:xml:rest:netapi:nms:1";
/// The namespace of the Notification Channel data types.
pub const NC_NS: &str = "urn:oma:xml:rest:netapi:notificationchannel:1";

/// Repeating elements: `(parent, child, always)`; `always`: the JSON binding shows the list
/// even when it is empty.
const LISTS: &[(&str, &str, bool)] = &[
    ("attributes", "attribute", true),
    ("attribute", "value", true),
    ("flags", "flag", true),
    ("flagList", "flag", true),
    ("object", "payloadPart", false),
    ("objectList", "object", true),
    ("folderList", "folder", true),
    ("subFolders", "folderReference", true),
    ("objects", "objectReference", true),
    ("objectReferenceList", "objectReference", true),
    ("folderReferenceList", "folderReference", true),
    ("bulkResponseList", "response", true),
    ("nmsSubscriptionList", "subscription", true),
    ("nmsEventList", "nmsEvent", true),
    ("nmsEventList", "link", true),
    ("serviceException", "variables", false),
    ("policyException", "variables", false),
    ("pathList", "path", true),
    ("notificationChannelList", "notificationChannel", true),
];

/// Elements holding whole numbers.
const NUMBERS: &[&str] =
    &["lastModSeq", "size", "index", "duration", "code", "channelLifetime", "maxNotifications", "maxWaitTime"];

/// Structures with no required member (empty in XML, `{}` in JSON), beyond the list holders.
const STRUCTURES: &[&str] = &["resetBox", "changedObject", "changedFolder"];

/// Roots whose JSON value is a list of entries (`notificationList`): in XML the entries'
/// members are the root's children.
const LIST_ROOTS: &[&str] = &["notificationList"];

/// The XML form of a JSON request document `{"root": ..}` (other JSON: `None`).
pub fn to_xml(doc: &Value) -> Option<String> {
    let map = doc.as_object()?;
    let (root, value) = map.iter().next().filter(|_| map.len() == 1)?;
    let ns =
        if root.starts_with("notificationChannel") || root == "longPollingRequestParameters" { NC_NS } else { NMS_NS };
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    write(&mut out, &format!("x:{root}"), value, &format!(" xmlns:x=\"{ns}\""));
    Some(out)
}

fn write(out: &mut String, tag: &str, v: &Value, attrs: &str) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| write(out, tag, i, attrs)),
        Value::Object(members) => {
            out.push_str(&format!("<{tag}{attrs}>"));
            for (k, v) in members {
                write(out, k, v, "");
            }
            out.push_str(&format!("</{tag}>"));
        }
        Value::Null => out.push_str(&format!("<{tag}{attrs}/>")),
        Value::String(s) => out.push_str(&format!("<{tag}{attrs}>{}</{tag}>", quick_xml::escape::escape(s.as_str()))),
        other => out.push_str(&format!("<{tag}{attrs}>{other}</{tag}>")),
    }
}

/// An element read from a response: local name, attributes, text and children.
#[derive(Default)]
struct El {
    name: String,
    attrs: Vec<(String, String)>,
    text: String,
    children: Vec<El>,
}

/// Read an XML answer into the JSON shape of the same document.
pub fn to_json(body: &[u8]) -> Result<Value, String> {
    let root = parse(body)?;
    let value = if LIST_ROOTS.contains(&root.name.as_str()) {
        // Each entry starts with a child named like the first one.
        let mut entries: Vec<Value> = Vec::new();
        let first = root.children.first().map(|c| c.name.clone()).unwrap_or_default();
        for child in &root.children {
            if child.name == first || entries.is_empty() {
                entries.push(Value::Object(Map::new()));
            }
            if let Some(Value::Object(entry)) = entries.last_mut() {
                entry.insert(child.name.clone(), value_of(child));
            }
        }
        Value::Array(entries)
    } else if root.name == "empty" {
        Value::Null
    } else {
        value_of(&root)
    };
    let mut doc = Map::new();
    doc.insert(root.name, value);
    Ok(Value::Object(doc))
}

fn value_of(el: &El) -> Value {
    let lists: Vec<(&str, bool)> =
        LISTS.iter().filter(|(p, ..)| *p == el.name).map(|(_, child, always)| (*child, *always)).collect();
    if !el.attrs.is_empty() {
        return Value::Object(el.attrs.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect());
    }
    if el.children.is_empty() && lists.is_empty() && !STRUCTURES.contains(&el.name.as_str()) {
        if NUMBERS.contains(&el.name.as_str())
            && let Ok(n) = el.text.trim().parse::<i64>()
        {
            return Value::from(n);
        }
        return Value::String(el.text.clone());
    }
    let mut map = Map::new();
    for (child, always) in &lists {
        if *always {
            map.insert((*child).to_string(), Value::Array(Vec::new()));
        }
    }
    for child in &el.children {
        let v = value_of(child);
        if lists.iter().any(|(c, _)| *c == child.name) {
            match map.entry(child.name.clone()).or_insert_with(|| Value::Array(Vec::new())) {
                Value::Array(items) => items.push(v),
                other => *other = Value::Array(vec![v]),
            }
        } else {
            map.insert(child.name.clone(), v);
        }
    }
    Value::Object(map)
}

fn parse(body: &[u8]) -> Result<El, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the XML body is not UTF-8".to_string())?;
    let mut reader = quick_xml::Reader::from_str(text);
    let mut stack: Vec<El> = Vec::new();
    let open = |e: &quick_xml::events::BytesStart<'_>| El {
        name: String::from_utf8_lossy(e.local_name().as_ref()).into_owned(),
        attrs: e
            .attributes()
            .flatten()
            .filter(|a| a.key.prefix().is_none() && a.key.as_ref() != b"xmlns")
            .map(|a| {
                let k = String::from_utf8_lossy(a.key.local_name().as_ref()).into_owned();
                (k, a.normalized_value(quick_xml::XmlVersion::Implicit1_0).map(|v| v.into_owned()).unwrap_or_default())
            })
            .collect(),
        ..El::default()
    };
    loop {
        match reader.read_event().map_err(|e| format!("malformed XML: {e}"))? {
            Event::Start(e) => stack.push(open(&e)),
            Event::Empty(e) => {
                let el = open(&e);
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => return Ok(el),
                }
            }
            Event::End(_) => {
                let el = stack.pop().ok_or("an end tag without a start")?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => return Ok(el),
                }
            }
            Event::Text(t) => {
                if let Some(el) = stack.last_mut() {
                    el.text.push_str(&t.xml10_content().map_err(|e| e.to_string())?);
                }
            }
            Event::CData(t) => {
                if let Some(el) = stack.last_mut() {
                    el.text.push_str(&t.xml10_content().map_err(|e| e.to_string())?);
                }
            }
            Event::GeneralRef(r) => {
                let name = r.decode().map_err(|e| e.to_string())?;
                let c = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    _ => quick_xml::escape::resolve_predefined_entity(&name)
                        .ok_or_else(|| format!("unknown entity &{name};"))?
                        .to_string(),
                };
                if let Some(el) = stack.last_mut() {
                    el.text.push_str(&c);
                }
            }
            Event::Eof => return Err("no root element".into()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lists_numbers_and_empty_structures_come_back_as_json() {
        let xml = br#"<?xml version="1.0"?><nms:object xmlns:nms="urn:oma:xml:rest:netapi:nms:1">
            <parentFolder>http://x/f</parentFolder><attributes><attribute><name>A</name><value>1 &amp; 2</value>
            </attribute></attributes><flags/><lastModSeq>7</lastModSeq></nms:object>"#;
        let v = to_json(xml).unwrap_or_default();
        assert_eq!(
            v,
            json!({"object": {"attributes": {"attribute": [{"name": "A", "value": ["1 & 2"]}]},
                "parentFolder": "http://x/f", "flags": {"flag": []}, "lastModSeq": 7}})
        );
        let list = br#"<nc:notificationChannelList xmlns:nc="x"><notificationChannel><channelLifetime>5
            </channelLifetime></notificationChannel><resourceURL>u</resourceURL></nc:notificationChannelList>"#;
        assert_eq!(
            to_json(list).unwrap_or_default(),
            json!({"notificationChannelList": {"notificationChannel": [{"channelLifetime": 5}], "resourceURL": "u"}})
        );
    }

    #[test]
    fn requests_become_namespaced_documents() {
        let xml = to_xml(&json!({"flagList": {"flag": ["\\Seen", "a<b"]}})).unwrap_or_default();
        assert!(xml.ends_with(
            "<x:flagList xmlns:x=\"urn:oma:xml:rest:netapi:nms:1\"><flag>\\Seen</flag><flag>a&lt;b</flag></x:flagList>"
        ));
        assert_eq!(to_xml(&json!([1])), None);
    }
}
