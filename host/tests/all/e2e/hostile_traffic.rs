//! Hostile traffic at the HTTP layer, sent as raw bytes so no client normalises it: bodies
//! at and over the limit with and without `Content-Length`, wrong methods and content
//! types, and path tricks. Each gets its documented status, and nothing is stored that
//! should not be.

use serde_json::json;
use sluice_testkit::{Backend, Sluice, stripe_header, unix_now};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Send `head` (request line and headers, without the blank line) and `body` on a fresh
/// connection that closes after the answer; the answer's status and body.
async fn raw(sluice: &Sluice, head: &str, body: &[u8]) -> (u16, String) {
    let addr = sluice.base_url.trim_start_matches("http://").to_string();
    let mut stream = TcpStream::connect(&addr).await.expect("connecting");
    let mut request = format!("{head}\r\nHost: {addr}\r\nConnection: close\r\n\r\n").into_bytes();
    request.extend_from_slice(body);
    // The server may answer (413) and close before it has read all of a large body.
    let _ = stream.write_all(&request).await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A Stripe event of exactly `size` bytes with a unique id.
fn stripe_event_of(size: usize, id: &str) -> Vec<u8> {
    let mut body = format!(
        r#"{{"id":"{id}","object":"event","type":"charge.succeeded","created":1700000000,"data":{{"object":{{"id":"ch_{id}","object":"charge","amount":100,"currency":"usd","status":"succeeded"}}}},"pad":""#
    )
    .into_bytes();
    assert!(body.len() + 2 <= size);
    body.resize(size - 2, b'a');
    body.extend_from_slice(b"\"}");
    assert_eq!(body.len(), size);
    body
}

/// `body` in HTTP/1.1 chunks of 64 KiB, with the terminating chunk.
fn chunked(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in body.chunks(64 * 1024) {
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_at_and_over_the_limit() {
    let Some(sluice) = Sluice::start(Backend::Sqlite).await else {
        return;
    };
    let (inst, secret) = sluice.stripe_installation().await;
    let limit = 1024 * 1024;
    let post = |length: Option<usize>, signature: &str| {
        let length = match length {
            Some(n) => format!("Content-Length: {n}"),
            None => "Transfer-Encoding: chunked".to_string(),
        };
        format!(
            "POST /webhooks/{inst} HTTP/1.1\r\nContent-Type: application/json\r\nStripe-Signature: {signature}\r\n{length}"
        )
    };

    // Exactly the limit: accepted, with a length or chunked.
    let at = stripe_event_of(limit, "evt_at_limit");
    let sig = stripe_header(&at, &secret, unix_now());
    let (status, body) = raw(&sluice, &post(Some(at.len()), &sig), &at).await;
    assert_eq!(status, 200, "{body}");
    let at_chunked = stripe_event_of(limit, "evt_at_limit_chunked");
    let sig = stripe_header(&at_chunked, &secret, unix_now());
    let (status, body) = raw(&sluice, &post(None, &sig), &chunked(&at_chunked)).await;
    assert_eq!(status, 200, "{body}");

    // One byte over, without a Content-Length to refuse it by: cut off while reading.
    let over = stripe_event_of(limit + 1, "evt_over_chunked");
    let sig = stripe_header(&over, &secret, unix_now());
    let (status, body) = raw(&sluice, &post(None, &sig), &chunked(&over)).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("payload_too_large"), "{body}");

    let ids = sluice.provider_event_ids(&inst).await;
    assert_eq!(ids, ["evt_at_limit", "evt_at_limit_chunked"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_methods_content_types_and_path_tricks() {
    let Some(sluice) = Sluice::start(Backend::Sqlite).await else {
        return;
    };
    let (inst, secret) = sluice.stripe_installation().await;
    let token = sluice.admin_token.clone();

    // Webhooks take POST only.
    for method in ["GET", "PUT", "DELETE", "PATCH"] {
        let (status, body) =
            raw(&sluice, &format!("{method} /webhooks/{inst} HTTP/1.1"), b"").await;
        assert_eq!(status, 405, "{method}: {body}");
    }
    // The body reaches the driver byte for byte whatever its declared type: the provider's
    // signature is over the bytes, not the type.
    let event = stripe_event_of(600, "evt_text_plain");
    let sig = stripe_header(&event, &secret, unix_now());
    let (status, body) = raw(
        &sluice,
        &format!(
            "POST /webhooks/{inst} HTTP/1.1\r\nContent-Type: text/plain\r\nStripe-Signature: {sig}\r\nContent-Length: {}",
            event.len()
        ),
        &event,
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // The admin API takes JSON only.
    let create = json!({"driver_id": "stripe", "installation_id": "inst_by_form"}).to_string();
    let (status, body) = raw(
        &sluice,
        &format!(
            "POST /v1/installations HTTP/1.1\r\nAuthorization: Bearer {token}\r\nContent-Type: text/plain\r\nContent-Length: {}",
            create.len()
        ),
        create.as_bytes(),
    )
    .await;
    assert_eq!(status, 415, "{body}");

    // Paths that try to reach the admin API without the token, or a webhook by another
    // name: never a 2xx, never a handler behind the token.
    for path in [
        "//v1/installations",
        "/webhooks/../v1/installations",
        "/webhooks/%2e%2e/v1/installations",
        "/v1/./installations",
        "/v1/installations/../drivers",
        "/V1/installations",
        "/v1%2finstallations",
    ] {
        let (status, body) = raw(&sluice, &format!("GET {path} HTTP/1.1"), b"").await;
        assert!(
            status == 401 || status == 404 || status == 405 || status == 400,
            "GET {path} without a token: {status} {body}"
        );
        assert!(
            !body.contains("installations\":"),
            "GET {path} listed installations: {body}"
        );
    }
    for path in [
        format!("/webhooks/{inst}/extra"),
        "/webhooks/".to_string(),
        format!("/webhooks/{inst}%00"),
        format!("/webhooks/..%2f{inst}"),
    ] {
        let (status, body) = raw(
            &sluice,
            &format!(
                "POST {path} HTTP/1.1\r\nStripe-Signature: {sig}\r\nContent-Length: {}",
                event.len()
            ),
            &event,
        )
        .await;
        assert!(
            status == 401 || status == 404 || status == 405,
            "POST {path}: {status} {body}"
        );
    }
    let ids = sluice.provider_event_ids(&inst).await;
    assert_eq!(ids, ["evt_text_plain"]);
    let resp = sluice
        .admin(reqwest::Method::GET, "/v1/installations/inst_by_form", None)
        .await;
    resp.expect_status(404);
}
