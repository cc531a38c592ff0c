//! Payload and payload-part retrieval (NMS 6.5, 6.6).

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

async fn deposit_two_parts(app: &TestApp, big: &[u8]) -> Value {
    let (inner_type, inner) = nested(
        "multipart/mixed",
        "inner-b",
        &[
            (
                &[("Content-Type", "text/plain"), ("Content-Disposition", "attachment; filename=\"body.txt\"")],
                b"Are you coming?",
            ),
            (
                &[
                    ("Content-Type", "image/gif"),
                    ("Content-Disposition", "attachment; filename=\"picture.gif\""),
                    ("Content-ID", "<pic1>"),
                ],
                big,
            ),
        ],
    );
    let (ct, body) = form()
        .root_fields(&json!({}))
        .part(&[("Content-Type", &inner_type), ("Content-Disposition", "form-data; name=\"attachments\"")], &inner)
        .finish("multipart/form-data");
    app.deposit_and_get(&ct, body).await
}

#[tokio::test]
async fn parts_are_served_raw_even_to_json_clients() {
    let app = spawn_app().await;
    let big: Vec<u8> = (0..30_000u32).map(|i| (i % 251) as u8).collect();
    let o = deposit_two_parts(&app, &big).await;
    let parts = o["payloadPart"].as_array().expect("parts");
    let res = app.get(parts[0]["href"].as_str().expect("href")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers().get("content-type").expect("ct"), "text/plain");
    assert_eq!(res.bytes().await.expect("bytes").as_ref(), b"Are you coming?");
    let res = app.get(parts[1]["href"].as_str().expect("href")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers().get("content-type").expect("ct"), "image/gif");
    assert_eq!(res.headers().get("content-length").expect("len"), "30000");
    assert_eq!(res.bytes().await.expect("bytes").as_ref(), big.as_slice());
    assert_error(
        app.get(&format!(
            "{}/objects/{}/payloadParts/9",
            app.base(ALICE),
            last_segment(o["resourceURL"].as_str().expect("u"))
        ))
        .await,
        404,
        "SVC0004",
    )
    .await;
}

#[tokio::test]
async fn ranges_are_served() {
    let app = spawn_app().await;
    let big: Vec<u8> = (0..30_000u32).map(|i| (i % 251) as u8).collect();
    let o = deposit_two_parts(&app, &big).await;
    let parts = o["payloadPart"].as_array().expect("parts");
    for href in [parts[0]["href"].as_str().expect("href"), parts[1]["href"].as_str().expect("href")] {
        let res = app.req(Method::GET, href).header("Range", "bytes=2-5").send().await.expect("send");
        assert_eq!(res.status(), 206);
        let total = res.headers().get("content-range").expect("range").to_str().expect("s").to_string();
        assert!(total.starts_with("bytes 2-5/"), "{total}");
        assert_eq!(res.bytes().await.expect("bytes").len(), 4);
    }
    let href = parts[1]["href"].as_str().expect("href");
    let res = app.req(Method::GET, href).header("Range", "bytes=-10").send().await.expect("send");
    assert_eq!(res.bytes().await.expect("bytes").as_ref(), &big[big.len() - 10..]);
    let res = app.req(Method::GET, href).header("Range", "bytes=29990-").send().await.expect("send");
    assert_eq!(res.bytes().await.expect("bytes").as_ref(), &big[29990..]);
    let res = app.req(Method::GET, href).header("Range", "bytes=40000-40010").send().await.expect("send");
    assert_eq!(res.status(), 416);
    assert_eq!(res.headers().get("content-range").expect("cr"), "bytes */30000");
}

#[tokio::test]
async fn whole_payload_is_the_part_itself_or_a_multipart() {
    let app = spawn_app().await;
    let big: Vec<u8> = (0..30_000u32).map(|i| (i % 7) as u8).collect();
    let o = deposit_two_parts(&app, &big).await;
    let res = app.get(o["payloadURL"].as_str().expect("payloadURL")).await;
    assert_eq!(res.status(), 200);
    let ct = res.headers().get("content-type").expect("ct").to_str().expect("s").to_string();
    assert!(ct.starts_with("multipart/mixed; boundary="), "{ct}");
    let declared: usize = res.headers().get("content-length").expect("len").to_str().expect("s").parse().expect("n");
    let body = res.bytes().await.expect("bytes");
    assert_eq!(body.len(), declared);
    // Parse it back with the same multipart parser a client would use.
    let mt: mime::Mime = ct.parse().expect("media type");
    let boundary = mt.get_param("boundary").expect("boundary").to_string();
    let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(body) });
    let mut mp = multer::Multipart::new(stream, boundary);
    let first = mp.next_field().await.expect("field").expect("first");
    assert_eq!(first.content_type().map(|m| m.to_string()).as_deref(), Some("text/plain"));
    assert_eq!(first.file_name(), Some("body.txt"));
    assert_eq!(first.bytes().await.expect("b").as_ref(), b"Are you coming?");
    let second = mp.next_field().await.expect("field").expect("second");
    assert_eq!(second.headers().get("content-id").expect("cid"), "<pic1>");
    assert_eq!(second.bytes().await.expect("b").as_ref(), big.as_slice());
    assert!(mp.next_field().await.expect("end").is_none());

    // One part: served as itself.
    let (ct, body) = form()
        .root_fields(&json!({}))
        .part(&[("Content-Disposition", "form-data; name=\"attachments\""), ("Content-Type", "text/plain")], b"solo")
        .finish("multipart/form-data");
    let o = app.deposit_and_get(&ct, body).await;
    let res = app.get(o["payloadURL"].as_str().expect("payloadURL")).await;
    assert_eq!(res.headers().get("content-type").expect("ct"), "text/plain");
    assert_eq!(res.bytes().await.expect("b").as_ref(), b"solo");
    // No payload: 404.
    let url = app.create_object(json!({})).await;
    assert_error(app.get(&format!("{url}/payload")).await, 404, "SVC0004").await;
}
