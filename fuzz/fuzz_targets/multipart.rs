//! The streaming multipart reader (`cpm_nms::multipart`): outer and nested bodies, chunked
//! as the input says, with the part-head bounds the server uses.
//!
//! Input: byte 0 picks the chunk size, byte 1 the head bound; the rest is the body, read
//! with boundary `b` (and, for a part whose Content-Type names a multipart boundary, read
//! again with that boundary, as deposits read a nested payload). Must hold: no panic, the
//! reader ends, no part's content is longer than the input, and no head is accepted over
//! its bound.

#![no_main]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use cpm_nms::multipart::{Limits, Reader, header_fields, header_param};
use libfuzzer_sys::fuzz_target;

/// Run a future whose streams are always ready (no I/O) to completion.
fn run<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let chunk = usize::from(data[0]) + 1;
    let limits = Limits { max_head_bytes: 64 + usize::from(data[1]) * 16, max_fields: 16 };
    let body = &data[2..];
    let chunks: Vec<cpm_nms::error::Result<Bytes>> =
        body.chunks(chunk).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    run(async {
        let mut outer = Reader::new(futures_util::stream::iter(chunks), "b", limits);
        let mut total = 0usize;
        while let Ok(Some(headers)) = outer.next_part().await {
            let text: usize = headers.fields().iter().map(|(n, v)| n.len() + v.len()).sum();
            // Invalid UTF-8 reads as U+FFFD (3 bytes for 1), so at most 3x the bound.
            assert!(text <= 3 * limits.max_head_bytes, "a head over its bound was accepted");
            assert!(headers.fields().len() <= limits.max_fields);
            let nested = headers.get("content-type").and_then(|t| header_param(t, "boundary"));
            match nested {
                Some(boundary) if !boundary.is_empty() => {
                    let mut inner = Reader::new(outer.body(), &boundary, limits);
                    while let Ok(Some(_)) = inner.next_part().await {
                        while let Ok(Some(c)) = inner.chunk().await {
                            total += c.len();
                        }
                    }
                }
                _ => {
                    while let Ok(Some(c)) = outer.chunk().await {
                        total += c.len();
                    }
                }
            }
            assert!(total <= body.len(), "more content than input");
        }
    });
    // The header-line reader and the parameter reader on their own.
    if let Ok(text) = std::str::from_utf8(body) {
        if let Ok(fields) = header_fields(text) {
            for (name, value) in fields {
                assert!(!name.is_empty());
                let _ = header_param(&value, "name");
            }
        }
    }
});
