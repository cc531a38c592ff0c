//! Multipart deposits as the specifications print them and as attackers send them: folded
//! part headers (NMS 6.1.5.5), `multipart/related` bodies and payload parts of any name
//! (CPM Appendix H), bounded part heads (outer, nested, CPIM).

use serde_json::{Value, json};

use crate::helpers::*;

fn crlf(s: &str) -> Vec<u8> {
    s.replace('\n', "\r\n").into_bytes()
}

/// NMS 6.1.5.5 (Appendix D.5) as printed, but for its JSON root fields and straight quotes:
/// the nested parts fold `Content-Disposition` onto a continuation line.
#[tokio::test]
async fn the_specifications_folded_part_headers_are_read() {
    let app = spawn_app().await;
    let body = crlf(
        r#"--===============outer123456==
Content-Type: application/json
Content-Disposition: form-data; name="root-fields"

{"object": {"parentFolderPath": "/main", "flags": {"flag": ["\\Seen", "\\Flagged"]}}}
--===============outer123456==
Content-Type: multipart/related; start="28186490"; boundary="--=-sep-=--"
Content-Disposition: multipart/form-data; name="attachments"

----=-sep-=--
Content-Type: text/plain; charset=UTF-8
Content-Transfer-Encoding: quoted-printable
Content-Disposition: inline;
 filename="text.txt"
Content-ID: <28184720>

See attached photo.

----=-sep-=--
Content-Type: application/smil; charset=US-ASCII
Content-Transfer-Encoding: 7bit
Content-ID: <28186490>
Content-Disposition: inline;
 filename="slideshow.smil"

<smil><body><par dur="5000ms"><text src="cid:28184720"/><img src="cid:28186480"/></par></body></smil>

----=-sep-=--
Content-Type: image/jpeg
Content-Disposition: inline; filename="IMAG0067.jpg"
Content-Transfer-Encoding: binary
Content-ID: <28186480>

JFIF...binary image data...

----=-sep-=----
--===============outer123456==--"#,
    );
    let o = app.deposit("multipart/form-data; boundary=\"===============outer123456==\"", body).await;
    assert_eq!(o.status(), 201, "{}", o.text().await.unwrap());
    let v: Value = o.json().await.unwrap();
    let url = v["reference"]["resourceURL"].as_str().unwrap();
    let o: Value = app.get(url).await.json().await.unwrap();
    let parts = o["object"]["payloadPart"].as_array().unwrap();
    assert_eq!(parts.len(), 3, "{o}");
    assert_eq!(parts[0]["contentDisposition"], "inline; filename=\"text.txt\"", "unfolded: {o}");
    assert_eq!(parts[1]["contentDisposition"], "inline; filename=\"slideshow.smil\"");
    assert_eq!(parts[1]["contentType"], "application/smil; charset=US-ASCII");
}

/// The pidf part of CPM Appendix H, named `geo-location` as printed there.
fn geo_part() -> String {
    "Content-Disposition: inline; name=geo-location\nContent-Type: application/pidf+xml\nContent-ID: <loc-1d7e3a@ims.example.net>\n\n\
     <presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"pres:+13105550000@ims.example.net\"/>\n"
        .to_string()
}

/// CPM Appendix H sends a call log as an outer `multipart/related` whose payload part is
/// named `geo-location`; as `multipart/form-data` with that name it must work too.
#[tokio::test]
async fn the_call_log_upload_of_appendix_h_is_accepted() {
    let app = spawn_app().await;
    let root = std::fs::read_to_string("fixtures/cpm/call-log-geolocation.root-fields.json").unwrap();
    for (outer, disposition) in [
        ("multipart/related; boundary=LH6uxl4xe5sJ93i57iJLOyNl", "form-data; name=root-fields"),
        ("multipart/form-data; boundary=LH6uxl4xe5sJ93i57iJLOyNl", "form-data; name=\"root-fields\""),
        (
            "multipart/related; boundary=LH6uxl4xe5sJ93i57iJLOyNl; start=\"<root@x>\"; type=\"application/json\"",
            "form-data; name=root-fields\nContent-ID: <root@x>",
        ),
    ] {
        let body = crlf(&format!(
            "--LH6uxl4xe5sJ93i57iJLOyNl \nContent-Disposition: {disposition}\nContent-Type: application/json; charset=UTF-8\n\n{root}\n\
             --LH6uxl4xe5sJ93i57iJLOyNl \n{}--LH6uxl4xe5sJ93i57iJLOyNl-- \n",
            geo_part()
        ));
        let res = app.deposit(outer, body).await;
        assert_eq!(res.status(), 201, "{outer}: {}", res.text().await.unwrap());
        let v: Value = res.json().await.unwrap();
        let o: Value = app.get(v["reference"]["resourceURL"].as_str().unwrap()).await.json().await.unwrap();
        assert_eq!(o["object"]["payloadPart"][0]["contentType"], "application/pidf+xml", "{o}");
        assert_eq!(o["object"]["payloadPart"][0]["contentId"], "loc-1d7e3a@ims.example.net", "{o}");
    }
    // A `start` naming a later part: the root must come first (payloads stream as they come).
    let body = crlf(&format!(
        "--b\n{}--b\nContent-Type: application/json\nContent-ID: <root@x>\n\n{root}\n--b--\n",
        geo_part()
    ));
    let res = app.deposit("multipart/related; boundary=b; start=\"<root@x>\"", body).await;
    let exc = assert_error(res, 400, "SVC0002").await;
    assert!(exc["variables"][0].as_str().unwrap().contains("start"), "{exc}");
    assert!(app.blob_files().is_empty());
}

/// A deposit whose nested multipart payload has an inner part with a huge header.
fn huge_inner_header(bytes: usize) -> (String, Vec<u8>) {
    let huge = "h".repeat(bytes);
    let (inner_ct, inner) = nested(
        "multipart/mixed",
        "inner-b",
        &[(&[("Content-Type", "text/plain"), ("X-Huge", huge.as_str())], b"hello")],
    );
    form()
        .root_fields(&json!({}))
        .part(
            &[("Content-Disposition", "form-data; name=\"attachments\""), ("Content-Type", inner_ct.as_str())],
            &inner,
        )
        .finish("multipart/form-data")
}

#[tokio::test]
async fn part_heads_are_bounded_outer_and_nested() {
    let app = spawn_app_with(|s| s.limits.max_part_head_bytes = 4096).await;
    // Nested: a header of 1 MiB in an inner part (the reported case was 48 MiB).
    let (ct, body) = huge_inner_header(1024 * 1024);
    let exc = assert_error(app.deposit(&ct, body).await, 400, "SVC0002").await;
    assert!(exc["variables"][0].as_str().unwrap().contains("limits.max_part_head_bytes"), "{exc}");
    // Outer: the payload part's own head.
    let huge = "h".repeat(100_000);
    let (ct, body) = form()
        .root_fields(&json!({}))
        .part(&[("Content-Disposition", "form-data; name=\"attachments\""), ("X-Huge", huge.as_str())], b"x")
        .finish("multipart/form-data");
    assert_error(app.deposit(&ct, body).await, 400, "SVC0002").await;
    // Just under the bound: accepted.
    let (ct, body) = huge_inner_header(3000);
    let res = app.deposit(&ct, body).await;
    assert_eq!(res.status(), 201);
    assert!(app.blob_files().is_empty(), "{:?}", app.blob_files());
}

/// The CPIM head limit (64 KiB) holds however the head arrives: a 100 KiB header line that
/// arrives with the rest of the head in one piece is refused too.
#[tokio::test]
async fn the_cpim_head_limit_holds_for_a_head_that_arrives_whole() {
    let app = spawn_app().await;
    let payload = std::fs::read("fixtures/cpm/cpim-chat-image.payload").unwrap();
    let root = std::fs::read("fixtures/cpm/cpim-chat-image.root-fields.json").unwrap();
    let (ct, body) = form()
        .part(
            &[("Content-Disposition", "form-data; name=\"root-fields\""), ("Content-Type", "application/json")],
            &root,
        )
        .part(&[("Content-Disposition", "form-data; name=\"attachments\""), ("Content-Type", "message/cpim")], &payload)
        .finish("multipart/form-data");
    assert_eq!(app.deposit(&ct, body).await.status(), 201, "the fixture as it is");
    for size in [100 * 1024, 1024 * 1024] {
        let mut big = format!("Subject: {}\r\n", "s".repeat(size)).into_bytes();
        big.extend_from_slice(&payload);
        let (ct, body) = form()
            .part(
                &[("Content-Disposition", "form-data; name=\"root-fields\""), ("Content-Type", "application/json")],
                &root,
            )
            .part(&[("Content-Disposition", "form-data; name=\"attachments\""), ("Content-Type", "message/cpim")], &big)
            .finish("multipart/form-data");
        let exc = assert_error(app.deposit(&ct, body).await, 400, "SVC0002").await;
        assert!(exc["variables"][0].as_str().unwrap().contains("CPIM headers"), "{exc}");
    }
}

/// Folded lines in a CPIM head (RFC 3862 headers follow RFC 5322's folding) are unfolded.
#[tokio::test]
async fn folded_cpim_header_lines_are_unfolded() {
    let app = spawn_app().await;
    let cpim = crlf(
        "From: <sip:bob@example.com>\nTo: <tel:+12125551212>\nDateTime: 2026-11-23T14:03:27Z\nSubject: a long\n subject\n\n\
         Content-Type: text/plain;\n charset=utf-8\n\nhello\n",
    );
    let (ct, body) = form()
        .root_fields(&json!({}))
        .part(&[("Content-Disposition", "form-data; name=\"attachments\""), ("Content-Type", "message/cpim")], &cpim)
        .finish("multipart/form-data");
    let o = app.deposit_and_get(&ct, body).await;
    let attrs = o["attributes"]["attribute"].as_array().unwrap();
    let subject = attrs.iter().find(|a| a["name"] == "Subject").unwrap();
    assert_eq!(subject["value"][0], "a long subject", "{o}");
    assert_eq!(o["payloadPart"][0]["contentType"], "text/plain; charset=utf-8", "{o}");
}

/// Boundaries are 1 to 70 characters (RFC 2046 5.1.1), outer and nested; a part header
/// value with a control character is refused, as it could never be served back.
#[tokio::test]
async fn boundaries_and_header_values_are_checked() {
    let app = spawn_app().await;
    let long = "x".repeat(71);
    let body = crlf(&format!(
        "--{long}\nContent-Disposition: form-data; name=\"root-fields\"\n\n{{\"object\":{{}}}}\n--{long}--\n"
    ));
    let res = app.deposit(&format!("multipart/form-data; boundary={long}"), body).await;
    assert_error(res, 400, "SVC0002").await;
    for (boundary, status) in [("y".repeat(200), 400), ("z".repeat(70), 201)] {
        let (inner_ct, inner) = nested("multipart/mixed", &boundary, &[(&[("Content-Type", "text/plain")], b"hello")]);
        let (ct, body) = form()
            .root_fields(&json!({}))
            .part(
                &[("Content-Disposition", "form-data; name=\"attachments\""), ("Content-Type", inner_ct.as_str())],
                &inner,
            )
            .finish("multipart/form-data");
        assert_eq!(app.deposit(&ct, body).await.status(), status, "nested boundary of {}", boundary.len());
    }
    let (ct, body) = form()
        .root_fields(&json!({}))
        .part(&[("Content-Disposition", "attachment;\u{1}filename=a"), ("Content-Type", "text/plain")], b"x")
        .finish("multipart/form-data");
    assert_error(app.deposit(&ct, body).await, 400, "SVC0002").await;
    assert_eq!(app.object_count().await, 1, "only the 70-character boundary made an object");
}
