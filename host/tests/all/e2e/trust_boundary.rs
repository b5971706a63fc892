//! The trust boundary against a driver written to break it (`tests/drivers/hostile`, one
//! attack per `mode`), with two loopback origins standing in for the provider (`a`) and
//! another service (`b`), each recording every request it receives. The assertions are on
//! what those origins received and what the store holds; the driver's own account of its
//! attempts (its reply) is only printed when one fails.
//!
//! All along, a Stripe installation beside it receives a webhook every 20 ms: every one of
//! them must be accepted.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use sluice_testkit::neighbour::Neighbour;
use sluice_testkit::{
    Backend, Response, Sluice, both_backends, stripe_charge_variant, test_driver,
};
use sqlx::Connection as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const TOK_A: &str = "tok_a_3f9e1c7d20b4";
const TOK_B: &str = "tok_b_81d0c4e6a5f2";
const CAP_B: &str = "cap_b_5a7c90e13d68";
const KEY_A: &str = "key_a_c2e4f6a8b0d1";
/// The state budget the server runs with here (the default is 4 MiB).
const STATE_BUDGET: i64 = 1 << 20;
/// What the host keeps of a driver's text (`text::MAX_DRIVER_TEXT`).
const MAX_DRIVER_TEXT: usize = 4096;
/// Slowest acceptable Stripe delivery beside the attacks (a debug build on a busy 2-core
/// machine; the healthy path normally takes a few milliseconds).
const HEALTHY_P99: Duration = Duration::from_secs(2);

/// One request as an origin received it.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    /// Lower-cased names, in order.
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The whole request as text, to search for a secret anywhere in it.
    fn text(&self) -> String {
        let headers: Vec<String> = self
            .headers
            .iter()
            .map(|(n, v)| format!("{n}: {v}"))
            .collect();
        format!("{}\n{}\n{}", self.path, headers.join("\n"), self.body)
    }
}

/// A loopback origin. `/token` answers `{"token": "issued_by_<port>"}`, `/echo` the bearer
/// token it was sent, `/many-headers` 200 headers; anything else `{}`.
struct Origin {
    url: String,
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl Origin {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding an origin");
        let addr = listener.local_addr().expect("local address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let record = record.clone();
                tokio::spawn(async move {
                    // Bounded: a client that never finishes its request is dropped.
                    let _ = tokio::time::timeout(
                        Duration::from_secs(10),
                        serve(stream, addr.port(), &record),
                    )
                    .await;
                });
            }
        });
        Self {
            url: format!("http://{addr}"),
            port: addr.port(),
            seen,
            task,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn at(&self, path: &str) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.path == path).collect()
    }

    /// Whether any request it received holds `secret` anywhere.
    fn received(&self, secret: &str) -> bool {
        self.seen().iter().any(|s| s.text().contains(secret))
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one request (head and `content-length` body), records it, answers it.
async fn serve(mut stream: TcpStream, port: u16, record: &Mutex<Vec<Seen>>) -> Option<()> {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 || data.len() > 1 << 20 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let path = lines.next()?.split(' ').nth(1)?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = data[head_end + 4..].to_vec();
    while body.len() < length.min(1 << 20) {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&buf[..n]);
    }
    let seen = Seen {
        path: path.clone(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let mut extra = String::new();
    let answer = match path.as_str() {
        "/token" => json!({"token": format!("issued_by_{port}")}).to_string(),
        "/echo" => {
            let token = seen.header("authorization").unwrap_or_default();
            json!({"echo": token.trim_start_matches("Bearer ")}).to_string()
        }
        "/many-headers" => {
            for i in 0..200 {
                extra.push_str(&format!("x-h-{i}: {i}\r\n"));
            }
            "{}".to_string()
        }
        _ => "{}".to_string(),
    };
    record.lock().unwrap().push(seen);
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n{answer}",
        answer.len()
    );
    stream.write_all(response.as_bytes()).await.ok()?;
    let _ = stream.shutdown().await;
    Some(())
}

fn body(id: &str) -> Vec<u8> {
    format!(r#"{{"id":"{id}"}}"#).into_bytes()
}

/// The driver's account of one attempt, from its reply (for failure messages).
fn attempt<'a>(resp: &'a Response, name: &str) -> &'a str {
    resp.json["attempts"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e[0] == name))
        .and_then(|e| e[1].as_str())
        .unwrap_or_else(|| panic!("no attempt {name:?} in {}", resp.text))
}

/// The longest run of `c` in `text`.
fn longest_run(text: &str, c: char) -> usize {
    let (mut longest, mut run) = (0, 0);
    for ch in text.chars() {
        run = if ch == c { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    longest
}

/// The secret changes recorded for an installation, as `secret:action`.
async fn audit(sluice: &Sluice, inst: &str) -> Vec<String> {
    let resp = sluice
        .admin(
            Method::GET,
            &format!("/v1/installations/{inst}/audit"),
            None,
        )
        .await;
    resp.expect_status(200);
    resp.json["changes"]
        .as_array()
        .unwrap_or_else(|| panic!("no changes in {}", resp.text))
        .iter()
        .map(|c| {
            format!(
                "{}:{}",
                c["secret"].as_str().unwrap(),
                c["action"].as_str().unwrap()
            )
        })
        .collect()
}

struct Attack {
    sluice: Arc<Sluice>,
    a: Origin,
    b: Origin,
    db: sqlx::SqliteConnection,
}

impl Attack {
    /// A hostile installation in `mode`, with all four of its secrets set.
    async fn installation(&self, mode: &str) -> String {
        let inst = self
            .sluice
            .create_installation(
                "hostile",
                json!({"mode": mode, "a": self.a.url, "b": self.b.url}),
            )
            .await;
        let inst = inst["installation_id"].as_str().unwrap().to_string();
        for (name, value) in [
            ("tok_a", TOK_A),
            ("tok_b", TOK_B),
            ("cap_b", CAP_B),
            ("key_a", KEY_A),
        ] {
            self.sluice.put_secret(&inst, name, value).await;
        }
        inst
    }

    /// A new installation in `mode`, sent one webhook; returns it, the answer and what the
    /// server logged meanwhile.
    async fn run(&self, mode: &str) -> (String, Response, String) {
        let inst = self.installation(mode).await;
        let before = self.sluice.log().len();
        let resp = self
            .sluice
            .post_webhook(&inst, &[], body(&format!("evt_{mode}")))
            .await;
        let log = self.sluice.log();
        (
            inst,
            resp,
            log.get(before..).unwrap_or_default().to_string(),
        )
    }

    /// (keys, bytes of keys and values) of an installation's state.
    async fn state(&mut self, inst: &str) -> (i64, i64) {
        sqlx::query_as(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(CAST(key AS BLOB)) + LENGTH(value)), 0) FROM driver_state WHERE installation_id = ?",
        )
        .bind(inst)
        .fetch_one(&mut self.db)
        .await
        .expect("reading driver_state")
    }

    async fn state_keys(&mut self, inst: &str) -> Vec<String> {
        sqlx::query_scalar("SELECT key FROM driver_state WHERE installation_id = ? ORDER BY key")
            .bind(inst)
            .fetch_all(&mut self.db)
            .await
            .expect("reading driver_state")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_driver_is_held_to_the_boundary_while_stripe_keeps_working() {
    let (a, b) = (Origin::start().await, Origin::start().await);
    let hostile = std::fs::read(test_driver("hostile")).expect("reading hostile.wasm");
    let budget = STATE_BUDGET.to_string();
    let env = [
        ("SLUICE_ALLOW_HOSTS", "http://127.0.0.1:*"),
        ("SLUICE_SANDBOX_MAX_STATE_BYTES", budget.as_str()),
        // A failed normalization is a dead letter at once, for its stored reason.
        ("SLUICE_RETRIES_MAX_ATTEMPTS", "1"),
    ];
    let Some(sluice) =
        Sluice::start_with(Backend::Sqlite, &env, &[("hostile.wasm", &hostile)]).await
    else {
        return;
    };
    for secret in [TOK_A, TOK_B, CAP_B, KEY_A] {
        sluice.remember_secret(secret);
    }
    let db = sqlx::SqliteConnection::connect(sluice.database_url())
        .await
        .expect("opening the server's database");
    let sluice = Arc::new(sluice);
    let neighbour = Neighbour::start(sluice.clone()).await;
    let mut attack = Attack {
        sluice: sluice.clone(),
        a,
        b,
        db,
    };

    authority_and_framing(&attack).await;
    floods(&attack).await;
    captures(&attack).await;
    header_secrets(&attack).await;
    log_forging(&attack).await;
    driver_texts(&attack).await;
    state(&mut attack).await;
    replies_and_oracles(&attack).await;
    assert!(!sluice.log().contains("panicked"), "{}", sluice.log());

    let stripe = neighbour.installation.clone();
    let report = neighbour.finish().await;
    assert!(
        report.failures.is_empty(),
        "healthy deliveries failed: {:?}",
        report.failures
    );
    assert!(
        report.latencies.len() >= 20,
        "only {} healthy deliveries",
        report.latencies.len()
    );
    let p99 = report.p99().unwrap();
    eprintln!(
        "healthy Stripe neighbour: {} deliveries, all 200, p99 {p99:?}",
        report.latencies.len()
    );
    assert!(p99 < HEALTHY_P99, "healthy p99 {p99:?}");
    assert_eq!(sluice.events(&stripe).await.len(), report.latencies.len());
}

/// No credential leaves under an authority other than its URL's, and the connection's
/// framing stays the host's: none of those requests reaches either origin.
async fn authority_and_framing(t: &Attack) {
    let (_, resp, _) = t.run("authority").await;
    resp.expect_status(200);
    assert_eq!(t.a.at("/authority").len(), 0, "{:?}", t.a.at("/authority"));
    assert!(t.b.seen().is_empty(), "{:?}", t.b.seen());
    assert!(
        attempt(&resp, "bearer under Host: victim.example").starts_with("err invalid-request"),
        "{}",
        resp.text
    );

    let (_, resp, _) = t.run("framing").await;
    resp.expect_status(200);
    assert_eq!(t.a.at("/framing").len(), 0, "{:?}", t.a.at("/framing"));
    for header in [
        "Connection",
        "Transfer-Encoding",
        "Content-Length",
        "TE",
        "Upgrade",
        "Keep-Alive",
        "Proxy-Authorization",
        "Proxy-Connection",
    ] {
        let got = attempt(&resp, header);
        assert!(
            got.starts_with("err invalid-request")
                && got
                    .to_ascii_lowercase()
                    .contains(&header.to_ascii_lowercase()),
            "{header}: {got}"
        );
    }
}

/// 24,577 request headers (which once panicked the host), 70,000 bytes of one, and a
/// response of 200 headers: refused, and the host answers on.
async fn floods(t: &Attack) {
    let (_, resp, log) = t.run("header-flood").await;
    resp.expect_status(200);
    assert!(t.a.at("/flood").is_empty() && t.a.at("/heavy").is_empty());
    assert!(!log.contains("panicked"), "{log}");
    assert!(
        attempt(&resp, "24,577 headers").starts_with("err invalid-request"),
        "{}",
        resp.text
    );
    assert!(
        attempt(&resp, "70,000 bytes of header").starts_with("err invalid-request"),
        "{}",
        resp.text
    );

    let (_, resp, log) = t.run("response-flood").await;
    resp.expect_status(200);
    assert_eq!(t.a.at("/many-headers").len(), 1);
    assert!(!log.contains("panicked"), "{log}");
    assert!(
        attempt(&resp, "a response of 200 headers").starts_with("err "),
        "{}",
        resp.text
    );
}

/// A capture into a secret comes only from an origin that secret may be sent to: nothing
/// is planted in `tok_a` by B or in `cap_b` by A, and what A echoes never reaches B; B's
/// own answer to a request carrying `tok_b` is captured into `cap_b` as designed.
async fn captures(t: &Attack) {
    let (inst, resp, _) = t.run("plant").await;
    resp.expect_status(200);
    assert!(t.a.at("/token").is_empty(), "{:?}", t.a.at("/token"));
    assert!(t.b.at("/token").is_empty(), "{:?}", t.b.at("/token"));
    let after = t.a.at("/after");
    assert_eq!(after.len(), 1, "{}", resp.text);
    assert_eq!(
        after[0].header("authorization"),
        Some(format!("Bearer {TOK_A}").as_str())
    );
    assert!(
        !audit(&t.sluice, &inst)
            .await
            .iter()
            .any(|c| c.ends_with(":captured"))
    );

    let (inst, resp, _) = t.run("launder").await;
    resp.expect_status(200);
    assert!(t.a.at("/echo").is_empty(), "{:?}", t.a.at("/echo"));
    let after = t.b.at("/after");
    assert_eq!(after.len(), 1, "{}", resp.text);
    assert_eq!(
        after[0].header("authorization"),
        Some(format!("Bearer {CAP_B}").as_str())
    );
    assert!(!t.b.received(TOK_A), "tok_a reached b: {:?}", t.b.seen());
    assert!(t.b.at("/direct").is_empty());
    assert!(
        attempt(&resp, "tok_a to b").contains("not in its sent-to"),
        "{}",
        resp.text
    );
    assert!(
        !audit(&t.sluice, &inst)
            .await
            .iter()
            .any(|c| c.ends_with(":captured"))
    );

    let (inst, resp, _) = t.run("capture").await;
    resp.expect_status(200);
    assert!(
        attempt(&resp, "b's answer to no credential into cap_b")
            .contains("captures are only taken from a request that carries"),
        "{}",
        resp.text
    );
    let token = t.b.at("/token");
    assert_eq!(token.len(), 1, "{}", resp.text);
    assert_eq!(
        token[0].header("authorization"),
        Some(format!("Bearer {TOK_B}").as_str())
    );
    let after = t.b.at("/after");
    assert_eq!(after.len(), 2, "{}", resp.text);
    let issued = format!("Bearer issued_by_{}", t.b.port);
    assert_eq!(after[1].header("authorization"), Some(issued.as_str()));
    assert!(
        audit(&t.sluice, &inst)
            .await
            .contains(&"cap_b:captured".to_string())
    );
    assert!(!t.a.received(TOK_B) && !t.b.received(TOK_A) && !t.b.received(KEY_A));
}

/// `key_a` declares `X-Api-Key`: it leaves in that header and in no other shape.
async fn header_secrets(t: &Attack) {
    let (_, resp, _) = t.run("header-secret").await;
    resp.expect_status(200);
    assert!(t.a.at("/misuse").is_empty(), "{:?}", t.a.at("/misuse"));
    let proper = t.a.at("/proper");
    assert_eq!(proper.len(), 1, "{}", resp.text);
    assert_eq!(proper[0].header("x-api-key"), Some(KEY_A));
    assert_eq!(proper[0].header("authorization"), None);
    let carrying: Vec<Seen> =
        t.a.seen()
            .into_iter()
            .filter(|s| s.text().contains(KEY_A))
            .collect();
    assert_eq!(carrying.len(), 1, "{carrying:?}");
    assert!(!t.b.received(KEY_A));
}

/// A driver's newline, carriage return and NUL are written as escapes on its own line.
async fn log_forging(t: &Attack) {
    let (_, resp, log) = t.run("log-forge").await;
    resp.expect_status(200);
    let escaped = r"hostile says hi\nINFO sluice::pipeline: forged line\r\0 and a NUL";
    assert!(log.contains(escaped), "{log}");
    for line in log.lines().filter(|l| l.contains("forged line")) {
        assert!(line.contains("hostile says hi"), "a forged line: {line:?}");
    }
    let all = t.sluice.log();
    assert!(
        !all.contains('\r') && !all.contains('\0'),
        "raw CR or NUL in the log"
    );
}

/// 1 MiB of driver text, as a call's error, a failed normalization's reason, a poll's
/// error and a revocation's reason: at most [`MAX_DRIVER_TEXT`] of it in the answer, the
/// log and the stored row.
async fn driver_texts(t: &Attack) {
    let (inst, resp, log) = t.run("huge-error").await;
    resp.expect_status(500);
    assert_eq!(resp.error_code(), Some("driver_failed"));
    assert!(resp.text.len() < 1024, "{} bytes answered", resp.text.len());
    assert!(log.len() < 64 * 1024, "{} bytes logged", log.len());
    let run = longest_run(&log, 'e');
    assert!(
        (1000..=MAX_DRIVER_TEXT).contains(&run),
        "{run} bytes of the error logged"
    );
    assert!(t.sluice.events(&inst).await.is_empty());

    let (inst, resp, log) = t.run("huge-reason").await;
    assert_eq!(
        resp.status.as_u16(),
        200,
        "{}",
        &log[log.len().saturating_sub(3000)..]
    );
    assert!(log.len() < 64 * 1024, "{} bytes logged", log.len());
    let dead = t
        .sluice
        .admin(
            Method::GET,
            &format!("/v1/dead-letters?installation_id={inst}"),
            None,
        )
        .await;
    dead.expect_status(200);
    let reason = dead.json["dead_letters"][0]["reason"]
        .as_str()
        .unwrap_or_else(|| panic!("{}", dead.text));
    let run = longest_run(reason, 'r');
    assert!(
        (1000..=MAX_DRIVER_TEXT).contains(&run),
        "{run} bytes of the reason kept"
    );
    assert!(
        reason.len() < MAX_DRIVER_TEXT + 128,
        "{} bytes",
        reason.len()
    );

    let inst = t.installation("huge-poll-error").await;
    let before = t.sluice.log().len();
    let poll = t
        .sluice
        .admin(
            Method::POST,
            &format!("/v1/installations/{inst}/poll"),
            None,
        )
        .await;
    assert_eq!(
        poll.status.as_u16(),
        502,
        "{}",
        &poll.text[..poll.text.len().min(300)]
    );
    assert_eq!(poll.error_code(), Some("driver_error"));
    assert!(
        poll.text.len() < MAX_DRIVER_TEXT + 512,
        "{} bytes answered",
        poll.text.len()
    );
    let log = t.sluice.log();
    let log = log.get(before..).unwrap_or_default();
    assert!(longest_run(log, 'p') <= MAX_DRIVER_TEXT && log.len() < 64 * 1024);

    let (inst, resp, _) = t.run("huge-revoked").await;
    resp.expect_status(200);
    let got = t
        .sluice
        .admin(Method::GET, &format!("/v1/installations/{inst}"), None)
        .await;
    got.expect_status(200);
    assert_eq!(
        got.json["auth"]["status"],
        "revoked",
        "{}",
        &got.text[..got.text.len().min(300)]
    );
    let reason = got.json["auth"]["reason"].as_str().unwrap_or_default();
    let run = longest_run(reason, 'v');
    assert!(
        (1000..=MAX_DRIVER_TEXT).contains(&run),
        "{run} bytes of the reason kept"
    );
}

/// An installation's state stays within its budget, host keys and control characters are
/// refused in any case, and a failed call commits nothing it wrote.
async fn state(t: &mut Attack) {
    let inst = t.installation("state-flood").await;
    let mut last = None;
    for i in 0..20 {
        let resp = t
            .sluice
            .post_webhook(&inst, &[], body(&format!("evt_flood_{i}")))
            .await;
        resp.expect_status(200);
        last = Some(resp);
    }
    let (keys, bytes) = t.state(&inst).await;
    assert!(
        bytes <= STATE_BUDGET,
        "{bytes} bytes of state in {keys} keys"
    );
    // It filled up to within one value of the budget before it was refused.
    assert!(bytes > STATE_BUDGET - 2 * 64 * 1024, "{bytes} bytes");
    let last = last.unwrap();
    assert!(
        attempt(&last, "refused").starts_with("over-budget:"),
        "{}",
        last.text
    );
    assert_eq!(attempt(&last, "stored"), "0");

    let (inst, resp, _) = t.run("state-keys").await;
    resp.expect_status(200);
    assert_eq!(
        t.state_keys(&inst).await,
        Vec::<String>::new(),
        "{}",
        resp.text
    );
    assert!(attempt(&resp, "SLUICE:cursor").starts_with("err reserved-key:"));
    assert!(attempt(&resp, "a\0b").starts_with("err invalid-key:"));

    let (inst, resp, _) = t.run("state-then-bad-reply").await;
    resp.expect_status(500);
    assert_eq!(t.state_keys(&inst).await, Vec::<String>::new());
    assert!(t.sluice.events(&inst).await.is_empty());
}

/// Replies the host will not send (a 1xx, a status past 599, a content type with a line
/// break in it) and an oversized event id fail the call with nothing stored; `equals`
/// answers a call's budget of guesses, no more; settings are bounded.
async fn replies_and_oracles(t: &Attack) {
    for mode in ["reply-101", "reply-999", "huge-id"] {
        let (inst, resp, _) = t.run(mode).await;
        assert_eq!(resp.status.as_u16(), 500, "{mode}: {}", resp.text);
        assert_eq!(resp.error_code(), Some("driver_failed"), "{mode}");
        assert!(
            t.sluice.events(&inst).await.is_empty(),
            "{mode} stored events"
        );
    }

    let (_, resp, _) = t.run("equals-oracle").await;
    resp.expect_status(200);
    assert_eq!(attempt(&resp, "answered"), "256", "{}", resp.text);
    assert!(!attempt(&resp, "refused").is_empty());

    let huge = t
        .sluice
        .admin(
            Method::POST,
            "/v1/installations",
            Some(json!({"driver_id": "hostile", "settings": {"mode": "ok", "account": "x".repeat(500_000)}})),
        )
        .await;
    assert_eq!(
        huge.status.as_u16(),
        422,
        "{}",
        &huge.text[..huge.text.len().min(300)]
    );
    assert_eq!(huge.error_code(), Some("invalid_settings"));
}

both_backends!(a_replaced_secret_stops_verifying_before_the_api_answers => sqlite_a_replaced_secret_stops_verifying_before_the_api_answers, postgres_a_replaced_secret_stops_verifying_before_the_api_answers);

fn signed(n: usize) -> Vec<u8> {
    stripe_charge_variant(
        &format!("evt_swap_{n}"),
        &format!("ch_swap_{n}"),
        "usd",
        100,
    )
}

/// Each time `webhook_secret` is replaced, the very next delivery signed with the old value
/// is refused and one with the new value accepted; a secret set on an installation that was
/// not ready makes it ready at once.
async fn a_replaced_secret_stops_verifying_before_the_api_answers(backend: Backend) {
    let Some(sluice) = Sluice::start(backend).await else {
        return;
    };
    let (inst, mut current) = sluice.stripe_installation().await;
    let mut n = 0;
    for round in 0..5 {
        n += 1;
        sluice
            .post_stripe(&inst, &current, &signed(n))
            .await
            .expect_status(200);
        let next = format!("whsec_round{round}_{}", sluice_testkit::random_hex());
        sluice.put_secret(&inst, "webhook_secret", &next).await;
        n += 1;
        let old = sluice.post_stripe(&inst, &current, &signed(n)).await;
        assert_eq!(
            old.status.as_u16(),
            401,
            "round {round}: the old secret still verified: {}",
            old.text
        );
        n += 1;
        sluice
            .post_stripe(&inst, &next, &signed(n))
            .await
            .expect_status(200);
        current = next;
    }

    let fresh = sluice.create_installation("stripe", json!({})).await;
    let fresh = fresh["installation_id"].as_str().unwrap().to_string();
    let secret = format!("whsec_{}", sluice_testkit::random_hex());
    let before = sluice.post_stripe(&fresh, &secret, &signed(100)).await;
    before.expect_status(503);
    assert_eq!(before.error_code(), Some("installation_not_ready"));
    sluice.put_secret(&fresh, "webhook_secret", &secret).await;
    sluice
        .post_stripe(&fresh, &secret, &signed(101))
        .await
        .expect_status(200);
}

/// Through another PostgreSQL node, whose installation cache would keep the old secret for
/// a minute: the change notification makes it refuse the old secret within a bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_another_node_drops_a_replaced_secret_on_notification() {
    const BOUND: Duration = Duration::from_secs(5);
    let env = [("SLUICE_SERVER_INSTALLATION_CACHE_TTL_MS", "60000")];
    let Some(a) = Sluice::start_with_env(Backend::Postgres, &env).await else {
        return;
    };
    let shared = a.database_url().to_string();
    let Some(b) = Sluice::start_with_env(
        Backend::Postgres,
        &[env[0], ("SLUICE_DATABASE_URL", shared.as_str())],
    )
    .await
    else {
        return;
    };
    let (inst, old) = a.stripe_installation().await;
    // B caches the installation with the old secret.
    b.post_stripe(&inst, &old, &signed(1))
        .await
        .expect_status(200);
    let new = format!("whsec_{}", sluice_testkit::random_hex());
    b.remember_secret(&new);
    a.put_secret(&inst, "webhook_secret", &new).await;
    let changed = Instant::now();
    let mut n = 1;
    let took = loop {
        n += 1;
        let resp = b.post_stripe(&inst, &old, &signed(n)).await;
        match resp.status.as_u16() {
            401 => break changed.elapsed(),
            200 => {}
            other => panic!("{other}: {}", resp.text),
        }
        assert!(
            changed.elapsed() < BOUND,
            "node B still verified the old secret after {BOUND:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    eprintln!("node B refused the replaced secret {took:?} after node A's answer");
    b.post_stripe(&inst, &new, &signed(n + 1))
        .await
        .expect_status(200);
}

/// `GET /v1/installations` pages, and its parameters are checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_installation_list_is_paged() {
    let Some(sluice) = Sluice::start(Backend::Sqlite).await else {
        return;
    };
    let mut created = Vec::new();
    for _ in 0..5 {
        let inst = sluice.create_installation("stripe", json!({})).await;
        created.push(inst["installation_id"].as_str().unwrap().to_string());
    }
    created.sort();
    let mut listed = Vec::new();
    let mut path = "/v1/installations?limit=2".to_string();
    let mut pages = 0;
    loop {
        let resp = sluice.admin(Method::GET, &path, None).await;
        resp.expect_status(200);
        pages += 1;
        let page: Vec<String> = resp.json["installations"]
            .as_array()
            .unwrap_or_else(|| panic!("{}", resp.text))
            .iter()
            .map(|i| i["installation_id"].as_str().unwrap().to_string())
            .collect();
        assert!(page.len() <= 2, "{}", resp.text);
        listed.extend(page);
        if resp.json["has_more"] != Value::Bool(true) {
            assert_eq!(resp.json["next_cursor"], Value::Null);
            break;
        }
        let cursor = resp.json["next_cursor"]
            .as_str()
            .unwrap_or_else(|| panic!("{}", resp.text));
        path = format!("/v1/installations?limit=2&after={cursor}");
    }
    assert_eq!(pages, 3);
    assert_eq!(listed, created);
    for bad in ["limit=0", "limit=1001", "limit=two", "colour=blue"] {
        let resp = sluice
            .admin(Method::GET, &format!("/v1/installations?{bad}"), None)
            .await;
        assert_eq!(resp.status.as_u16(), 400, "{bad}: {}", resp.text);
    }
}
