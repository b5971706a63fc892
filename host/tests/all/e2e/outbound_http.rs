//! Outbound HTTP grants: a driver reaches only origins it declared *and* the operator's
//! policy grants (or the development grant names), and loopback only through an explicit
//! `SLUICE_ALLOW_HOSTS` grant. The
//! faulty driver's `fetch` mode GETs its `url` setting and stores the body as an event.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use sluice_testkit::{Backend, Sluice, both_backends};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

both_backends!(loopback_is_denied_without_a_grant => sqlite_loopback_is_denied_without_a_grant, postgres_loopback_is_denied_without_a_grant);
both_backends!(only_granted_origins_are_reached => sqlite_only_granted_origins_are_reached, postgres_only_granted_origins_are_reached);

both_backends!(credentials_go_only_where_they_are_bound => sqlite_credentials_go_only_where_they_are_bound, postgres_credentials_go_only_where_they_are_bound);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_origins_need_the_operators_grant() {
    declared_but_ungranted(Backend::Sqlite).await;
}

const FAKE_BODY: &str = r#"{"fetched":true}"#;

/// A tiny HTTP server answering every request `200` with [`FAKE_BODY`] (or `302` to a
/// location); it records the connections and request lines it saw and stops when dropped.
struct Fake {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Fake {
    async fn start(ip: &str) -> Self {
        Self::start_answering(ip, None).await
    }

    /// A fake answering every request `302 Found` with `location`.
    async fn redirecting(ip: &str, location: String) -> Self {
        Self::start_answering(ip, Some(location)).await
    }

    async fn start_answering(ip: &str, redirect: Option<String>) -> Self {
        let listener = TcpListener::bind((ip, 0))
            .await
            .unwrap_or_else(|e| panic!("binding {ip}:0: {e}"));
        let addr = listener.local_addr().expect("local address");
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (seen, lines) = (connections.clone(), requests.clone());
        let response = match redirect {
            None => format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{FAKE_BODY}",
                FAKE_BODY.len()
            ),
            Some(location) => format!(
                "HTTP/1.1 302 Found\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            ),
        };
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                seen.fetch_add(1, Ordering::SeqCst);
                // Bounded: a client that never finishes its request is dropped.
                let _ = tokio::time::timeout(
                    Duration::from_secs(10),
                    answer(stream, &lines, &response),
                )
                .await;
            }
        });
        Self {
            addr,
            connections,
            requests,
            task,
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one request head, records its request line (before answering, so the test sees
/// it once the host has the response) and answers it.
async fn answer(mut stream: TcpStream, lines: &Mutex<Vec<String>>, response: &str) -> Option<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 || head.len() > 64 * 1024 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    lines
        .lock()
        .unwrap()
        .push(head.lines().next().unwrap_or_default().to_string());
    stream.write_all(response.as_bytes()).await.ok()?;
    let _ = stream.shutdown().await;
    Some(())
}

/// A faulty installation in `fetch` mode for `url`; returns its id.
async fn fetcher(sluice: &Sluice, url: &str) -> String {
    let inst = sluice
        .create_installation("faulty", json!({"mode": "fetch", "url": url}))
        .await;
    inst["installation_id"].as_str().unwrap().to_string()
}

fn body(id: &str) -> Vec<u8> {
    format!(r#"{{"id":"{id}"}}"#).into_bytes()
}

/// Posts to a fetcher and checks the driver failed with `reason` (the driver's debug
/// rendering of what `http.send` gave it) and nothing was stored.
async fn expect_fetch_failed(sluice: &Sluice, inst: &str, id: &str, reason: &str) {
    let before = sluice.log().len();
    let resp = sluice.post_webhook(inst, &[], body(id)).await;
    resp.expect_status(500);
    assert_eq!(resp.error_code(), Some("driver_failed"), "{}", resp.text);
    // The reason is for the operator's log (what this delivery added to it), not for
    // whoever posted the webhook.
    let log = sluice.log();
    let log = log.get(before..).unwrap_or_default();
    assert!(log.contains(reason), "not {reason:?} in the log: {log}");
    assert!(!resp.text.contains(reason), "{}", resp.text);
    let events = sluice.events(inst).await;
    assert!(events.is_empty(), "stored {events:#?}");
}

async fn loopback_is_denied_without_a_grant(backend: Backend) {
    let fake = Fake::start("127.0.0.1").await;
    let Some(sluice) = Sluice::start(backend).await else {
        return;
    };
    let inst = fetcher(&sluice, &format!("http://{}/x", fake.addr)).await;
    expect_fetch_failed(&sluice, &inst, "evt_no_grant", "Error::Denied(").await;
    assert_eq!(fake.connections(), 0, "requests: {:?}", fake.requests());
}

async fn only_granted_origins_are_reached(backend: Backend) {
    let fake = Fake::start("127.0.0.1").await;
    // Same loopback network, different host: neither declared nor granted.
    let other = Fake::start("127.0.0.2").await;
    let Some(sluice) =
        Sluice::start_with_env(backend, &[("SLUICE_ALLOW_HOSTS", "http://127.0.0.1:*")]).await
    else {
        return;
    };

    let inst = fetcher(&sluice, &format!("http://{}/x", fake.addr)).await;
    let resp = sluice.post_webhook(&inst, &[], body("evt_granted")).await;
    resp.expect_status(200);
    assert_eq!(resp.json, json!({"accepted": 1, "duplicates": 0}));
    let events = sluice.events(&inst).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["sluiceprovidereventid"], "evt_granted");
    assert_eq!(events[0]["type"], "unmapped.faulty.event");
    assert_eq!(fake.requests(), ["GET /x HTTP/1.1"]);
    assert_eq!(fake.connections(), 1);

    let denied = fetcher(&sluice, &format!("http://{}/", other.addr)).await;
    expect_fetch_failed(&sluice, &denied, "evt_other_host", "Error::Denied(").await;
    assert_eq!(other.connections(), 0, "requests: {:?}", other.requests());
    assert_eq!(fake.connections(), 1);

    // A granted origin cannot bounce the request to one that is not: redirects are
    // handed to the driver, never followed.
    let bouncer = Fake::redirecting("127.0.0.1", format!("http://{}/", other.addr)).await;
    let bounced = fetcher(&sluice, &format!("http://{}/r", bouncer.addr)).await;
    expect_fetch_failed(&sluice, &bounced, "evt_redirect", "status 302").await;
    assert_eq!(bouncer.requests(), ["GET /r HTTP/1.1"]);
    assert_eq!(other.connections(), 0, "requests: {:?}", other.requests());
}

/// The faulty driver declares `https://api.example.com`; the policy grants a third-party
/// driver nothing until `[drivers.faulty] origins` names it.
async fn declared_but_ungranted(backend: Backend) {
    let Some(mut sluice) = Sluice::start(backend).await else {
        return;
    };
    let faulty = sluice.driver_info("faulty").await;
    assert_eq!(faulty["outbound_hosts"], json!(["https://api.example.com"]));
    assert_eq!(faulty["granted_hosts"], json!([]));
    assert_eq!(faulty["disabled_hosts"], json!(["https://api.example.com"]));
    assert_eq!(faulty["grant"], "none");
    // A bundled driver gets its provider's documented API origins with no configuration
    // (Stripe: the API and Connect's OAuth host).
    let stripe = sluice.driver_info("stripe").await;
    assert_eq!(
        stripe["granted_hosts"],
        json!(["https://api.stripe.com", "https://connect.stripe.com"])
    );
    assert_eq!(stripe["disabled_hosts"], json!([]));
    assert_eq!(stripe["grant"], "bundled_default");
    assert!(
        sluice
            .log()
            .contains("driver asks for origins the policy does not grant"),
        "{}",
        sluice.log()
    );

    let inst = fetcher(&sluice, "https://api.example.com/x").await;
    expect_fetch_failed(
        &sluice,
        &inst,
        "evt_ungranted",
        "https://api.example.com is declared but not granted by the operator's policy",
    )
    .await;

    // Granted in sluice.toml: the policy lets the request through (where it then fails to
    // resolve or connect here, with no internet — but not for the policy's sake).
    std::fs::write(
        sluice.dir().join("sluice.toml"),
        "[drivers.faulty]\norigins = [\"https://api.example.com\"]\n",
    )
    .unwrap();
    sluice.restart().await;
    let faulty = sluice.driver_info("faulty").await;
    assert_eq!(faulty["granted_hosts"], json!(["https://api.example.com"]));
    assert_eq!(faulty["grant"], "operator");
    let before = sluice.log().len();
    let resp = sluice.post_webhook(&inst, &[], body("evt_granted")).await;
    let log = sluice.log();
    let log = log.get(before..).unwrap_or_default();
    assert!(!log.contains("not granted"), "{log}");
    assert!(!log.contains("Error::Denied("), "{log}");
    // No internet here: it fails upstream (no address, no route, or the deadline).
    resp.expect_status(500);
}

/// The faulty driver's `token` is bound to `https://api.example.com` and the header
/// `X-Faulty-Token`. Its `leak-*` modes send it to the fake (reachable through the
/// development grant) as a bearer token, or under a header of their choosing: the host
/// refuses both before anything leaves, and the fake never sees a connection.
async fn credentials_go_only_where_they_are_bound(backend: Backend) {
    const TOKEN: &str = "tok_bound_9f3c1e";
    let fake = Fake::start("127.0.0.1").await;
    let Some(sluice) =
        Sluice::start_with_env(backend, &[("SLUICE_ALLOW_HOSTS", "http://127.0.0.1:*")]).await
    else {
        return;
    };
    let url = format!("http://{}/collect", fake.addr);
    for (mode, reason) in [
        // The token declares its header: as a bearer token it is refused for that,
        // before where it would go is even looked at.
        (
            "leak-bearer",
            "may only be sent in header \\\"x-faulty-token\\\"".to_string(),
        ),
        (
            "leak-header",
            "may only be sent in header \\\"x-faulty-token\\\", not \\\"X-Leak\\\"".to_string(),
        ),
    ] {
        let inst = sluice
            .create_installation("faulty", json!({"mode": mode, "url": url}))
            .await;
        let inst = inst["installation_id"].as_str().unwrap().to_string();
        sluice.put_secret(&inst, "token", TOKEN).await;
        expect_fetch_failed(&sluice, &inst, &format!("evt_{mode}"), &reason).await;
    }
    // Nor can a response from an origin the call may reach overwrite it: a capture into a
    // secret comes only from an origin that secret may be sent to.
    let inst = sluice
        .create_installation("faulty", json!({"mode": "plant", "url": url}))
        .await;
    let inst = inst["installation_id"].as_str().unwrap().to_string();
    sluice.put_secret(&inst, "token", TOKEN).await;
    expect_fetch_failed(
        &sluice,
        &inst,
        "evt_plant",
        "a capture into secret \\\"token\\\" is taken only from an origin it may be sent to",
    )
    .await;
    assert_eq!(fake.connections(), 0, "requests: {:?}", fake.requests());
    assert!(!sluice.log().contains(TOKEN), "the token reached the log");
}
