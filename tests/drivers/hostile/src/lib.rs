//! `hostile`: a driver that attacks the host's trust boundary, one attack per `mode`
//! setting, so the end-to-end tests can check what reached the loopback servers standing in
//! for two origins (`a`, `b` in the settings) and what was stored.
//!
//! Its secrets: `tok_a` may be sent to `a`, `tok_b` and `cap_b` to `b`, `key_a` to `a` in
//! the `X-Api-Key` header only. Every mode answers the webhook with a JSON reply listing
//! what each attempt got (`{"attempts": [["name", "ok 200" | "err <kind>: <text>"], …]}`):
//! that is for reading a failure, the tests assert on the servers and the store.
//!
//! Written against the WIT world with `wit-bindgen` directly (not the SDK) on purpose: a
//! third party's driver owes the host nothing.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "sluice:driver/driver",
});

use exports::sluice::driver::auth::{self, ScopeCheck, TokenGrant};
use exports::sluice::driver::ingest::{
    self, PollResult, RawEvent, ReceivedEvent, WebhookOutcome, WebhookReply,
};
use exports::sluice::driver::metadata::{self, AuthKind, DriverInfo, IngestionMode, SecretSpec};
use exports::sluice::driver::normalize;
use sluice::driver::canonical::CanonicalRecord;
use sluice::driver::http::{
    self, BasicCredential, Body, Capture, Credential, HeaderCredential, Method, Value,
};
use sluice::driver::log::{self, Level};
use sluice::driver::types::{CallContext, DriverError, IncomingRequest};
use sluice::driver::{secrets, state};

struct Hostile;

const SETTINGS_SCHEMA: &str = r#"{"type":"object","properties":{
  "mode":{"enum":["ok","authority","framing","header-flood","response-flood","plant","launder",
    "header-secret","log-forge","huge-error","huge-reason","huge-poll-error","state-flood",
    "state-keys","state-then-bad-reply","state-read","equals-oracle","reply-101","reply-999",
    "huge-id","capture","huge-revoked"]},
  "a":{"type":"string"},"b":{"type":"string"},"account":{"type":"string","x-sluice-account-key":true}},
  "additionalProperties":false}"#;

/// 1 MiB: far past any text the host keeps, and within what a call may return (8 MiB),
/// so it is the bound on texts that cuts it, not the bound on output.
const HUGE: usize = 1 << 20;

impl metadata::Guest for Hostile {
    fn get() -> DriverInfo {
        let spec = |name: &str, to: &str, header: Option<&str>| SecretSpec {
            name: name.into(),
            description: format!("may go to {to}"),
            required: false,
            sent_to: vec![to.into()],
            header: header.map(Into::into),
        };
        DriverInfo {
            id: "hostile".into(),
            version: "0.1.0".into(),
            display_name: "Hostile (test driver)".into(),
            auth_kind: AuthKind::None,
            ingestion_modes: vec![IngestionMode::Webhook, IngestionMode::Polling],
            settings_schema: SETTINGS_SCHEMA.into(),
            outbound_hosts: vec!["https://api.example.com".into()],
            secrets: vec![
                spec("tok_a", "{a}", None),
                spec("tok_b", "{b}", None),
                spec("cap_b", "{b}", None),
                spec("key_a", "{a}", Some("X-Api-Key")),
            ],
            wit_version: "0.6.1".into(),
            webhook_signing: vec![],
        }
    }
}

/// The settings' string `key`.
fn setting(ctx: &CallContext, key: &str) -> String {
    serde_json::from_str::<serde_json::Value>(&ctx.settings)
        .ok()
        .and_then(|s| s.get(key).and_then(|v| v.as_str()).map(str::to_string))
        .unwrap_or_default()
}

fn request(url: String) -> http::Request {
    http::Request {
        method: Method::Get,
        url,
        headers: vec![],
        body: Body::Empty,
        credential: None,
        capture: vec![],
        timeout_ms: Some(5_000),
    }
}

/// What one attempt got, as the reply lists it.
fn outcome(result: Result<http::Response, http::Error>) -> String {
    match result {
        Ok(r) => format!("ok {}", r.status),
        Err(http::Error::Denied(m)) => format!("err denied: {m}"),
        Err(http::Error::MissingCredential(m)) => format!("err missing-credential: {m}"),
        Err(http::Error::InvalidRequest(m)) => format!("err invalid-request: {m}"),
        Err(http::Error::LimitExceeded(m)) => format!("err limit-exceeded: {m}"),
        Err(http::Error::Timeout) => "err timeout".into(),
        Err(http::Error::Transport(m)) => format!("err transport: {m}"),
    }
}

struct Attempts(Vec<(String, String)>);

impl Attempts {
    fn send(&mut self, name: &str, request: http::Request) {
        self.0.push((name.into(), outcome(http::send(&request))));
    }

    fn note(&mut self, name: &str, what: String) {
        self.0.push((name.into(), what));
    }

    fn reply(&self) -> WebhookReply {
        WebhookReply {
            status: 200,
            content_type: "application/json".into(),
            body: serde_json::json!({ "attempts": self.0 })
                .to_string()
                .into_bytes(),
        }
    }
}

/// The request body's `id`, or `evt`.
fn event_id(request: &IncomingRequest) -> String {
    serde_json::from_slice::<serde_json::Value>(&request.body)
        .ok()
        .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(str::to_string))
        .unwrap_or_else(|| "evt".into())
}

fn raw(id: String, event_type: &str) -> RawEvent {
    RawEvent {
        provider_event_id: id,
        event_type: event_type.into(),
        account_key: None,
        occurred_at: None,
        payload: b"{}".to_vec(),
        api_version: None,
    }
}

impl ingest::Guest for Hostile {
    fn route_key(_: IncomingRequest) -> Option<String> {
        None
    }

    fn receive(ctx: CallContext, incoming: IncomingRequest) -> Result<WebhookOutcome, DriverError> {
        let (a, b) = (setting(&ctx, "a"), setting(&ctx, "b"));
        let id = event_id(&incoming);
        let mut attempts = Attempts(Vec::new());
        let mut events = vec![];
        let mut reply = None;
        match setting(&ctx, "mode").as_str() {
            // A credential under another authority than its URL's: a victim behind the
            // same front, and the other loopback origin.
            "authority" => {
                let mut r = request(format!("{a}/authority"));
                r.headers = vec![("Host".into(), "victim.example:443".into())];
                r.credential = Some(Credential::Bearer("tok_a".into()));
                attempts.send("bearer under Host: victim.example", r);
                let mut r = request(format!("{a}/authority"));
                let b_authority = b.trim_start_matches("http://").to_string();
                r.headers = vec![("host".into(), b_authority)];
                r.credential = Some(Credential::Header(HeaderCredential {
                    name: "X-Api-Key".into(),
                    secret: "key_a".into(),
                }));
                attempts.send("header credential under b's Host", r);
            }
            // The connection's framing, which the host's client owns.
            "framing" => {
                for (name, value) in [
                    ("Connection", "close"),
                    ("Transfer-Encoding", "chunked"),
                    ("Content-Length", "5"),
                    ("TE", "trailers"),
                    ("Upgrade", "websocket"),
                    ("Keep-Alive", "timeout=5"),
                    ("Proxy-Authorization", "Basic eDp5"),
                    ("Proxy-Connection", "keep-alive"),
                ] {
                    let mut r = request(format!("{a}/framing"));
                    r.headers = vec![(name.into(), value.into())];
                    r.credential = Some(Credential::Bearer("tok_a".into()));
                    attempts.send(name, r);
                }
            }
            // 24,577 headers once panicked the host inside `HeaderMap`.
            "header-flood" => {
                let mut r = request(format!("{a}/flood"));
                r.headers = (0..24_577).map(|i| ("x-a".into(), i.to_string())).collect();
                attempts.send("24,577 headers", r);
                let mut r = request(format!("{a}/heavy"));
                r.headers = vec![("x-big".into(), "v".repeat(70_000))];
                attempts.send("70,000 bytes of header", r);
            }
            // The server at `a` answers this path with more headers than a driver gets.
            "response-flood" => attempts.send(
                "a response of 200 headers",
                request(format!("{a}/many-headers")),
            ),
            // A's answer captured into a secret bound to B, then B's into one bound to A.
            "plant" => {
                let mut r = request(format!("{a}/token"));
                r.credential = Some(Credential::Bearer("tok_a".into()));
                r.capture = vec![Capture {
                    pointer: "/token".into(),
                    secret: "cap_b".into(),
                }];
                attempts.send("a's answer into cap_b", r);
                let mut r = request(format!("{b}/token"));
                r.credential = Some(Credential::Bearer("tok_b".into()));
                r.capture = vec![Capture {
                    pointer: "/token".into(),
                    secret: "tok_a".into(),
                }];
                attempts.send("b's answer into tok_a", r);
                let mut r = request(format!("{a}/after"));
                r.credential = Some(Credential::Bearer("tok_a".into()));
                attempts.send("tok_a to a afterwards", r);
            }
            // The rule's own case: B's answer to a request carrying tok_b, into cap_b (bound
            // to B), then sent back to B.
            "capture" => {
                // From the right origin, but with no credential: nothing vouches for it.
                let mut r = request(format!("{b}/token"));
                r.capture = vec![Capture {
                    pointer: "/token".into(),
                    secret: "cap_b".into(),
                }];
                attempts.send("b's answer to no credential into cap_b", r);
                let mut r = request(format!("{b}/token"));
                r.credential = Some(Credential::Bearer("tok_b".into()));
                r.capture = vec![Capture {
                    pointer: "/token".into(),
                    secret: "cap_b".into(),
                }];
                attempts.send("b's answer into cap_b", r);
                let mut r = request(format!("{b}/after"));
                r.credential = Some(Credential::Bearer("cap_b".into()));
                attempts.send("cap_b to b afterwards", r);
            }
            // A echoes tok_a; the echo into cap_b would carry it to B. And tok_a to B
            // directly.
            "launder" => {
                let mut r = request(format!("{b}/direct"));
                r.credential = Some(Credential::Bearer("tok_a".into()));
                attempts.send("tok_a to b", r);
                let mut r = request(format!("{a}/echo"));
                r.credential = Some(Credential::Bearer("tok_a".into()));
                r.capture = vec![Capture {
                    pointer: "/echo".into(),
                    secret: "cap_b".into(),
                }];
                attempts.send("a's echo into cap_b", r);
                let mut r = request(format!("{b}/after"));
                r.credential = Some(Credential::Bearer("cap_b".into()));
                attempts.send("cap_b to b afterwards", r);
            }
            // key_a is declared for the X-Api-Key header only.
            "header-secret" => {
                let mut r = request(format!("{a}/misuse"));
                r.credential = Some(Credential::Bearer("key_a".into()));
                attempts.send("key_a as bearer", r);
                let mut r = request(format!("{a}/misuse"));
                r.credential = Some(Credential::Basic(BasicCredential {
                    username: Value::Secret("key_a".into()),
                    password: Value::Text("x".into()),
                }));
                attempts.send("key_a as basic", r);
                let mut r = request(format!("{a}/misuse"));
                r.method = Method::Post;
                r.body = Body::Form(vec![("k".into(), Value::Secret("key_a".into()))]);
                attempts.send("key_a as a form value", r);
                let mut r = request(format!("{a}/misuse"));
                r.credential = Some(Credential::Header(HeaderCredential {
                    name: "X-Other".into(),
                    secret: "key_a".into(),
                }));
                attempts.send("key_a in another header", r);
                let mut r = request(format!("{a}/proper"));
                r.credential = Some(Credential::Header(HeaderCredential {
                    name: "X-Api-Key".into(),
                    secret: "key_a".into(),
                }));
                attempts.send("key_a in X-Api-Key", r);
            }
            "log-forge" => {
                log::log(
                    Level::Warn,
                    "hostile says hi\nINFO sluice::pipeline: forged line\r\0 and a NUL",
                );
                attempts.note("logged", "a newline, a CR and a NUL".into());
            }
            "huge-error" => return Err(DriverError::Internal("e".repeat(HUGE))),
            "huge-reason" => events.push(ReceivedEvent {
                raw: raw(id.clone(), "hostile.failed"),
                records: Err(DriverError::Internal("r".repeat(HUGE))),
            }),
            // 64 keys of 64 KiB a call, under new names each time.
            "state-flood" => {
                let (mut stored, mut refused) = (0, None);
                for i in 0..64 {
                    match state::set(&format!("{id}-{i}"), &vec![b's'; 64 * 1024]) {
                        Ok(()) => stored += 1,
                        Err(e) => {
                            refused.get_or_insert(e);
                        }
                    }
                }
                attempts.note("stored", stored.to_string());
                attempts.note("refused", refused.unwrap_or_default());
            }
            "state-keys" => {
                for key in ["SLUICE:cursor", "sLuIcE:poll-cursor", "a\0b", "line\nbreak"] {
                    let got = match state::set(key, b"x") {
                        Ok(()) => "ok".to_string(),
                        Err(e) => format!("err {e}"),
                    };
                    attempts.note(key, got);
                }
            }
            // A write, then a reply the host must not send: the whole call fails.
            "state-then-bad-reply" => {
                let _ = state::set("written-by-a-failed-call", b"x");
                events.push(ReceivedEvent {
                    raw: raw(id.clone(), "hostile.bad-reply"),
                    records: Ok(vec![]),
                });
                reply = Some(WebhookReply {
                    status: 200,
                    content_type: "text/plain\r\nX-Injected: 1".into(),
                    body: b"nope".to_vec(),
                });
            }
            "state-read" => {
                let value = state::get("written-by-a-failed-call");
                attempts.note("written-by-a-failed-call", format!("{value:?}"));
            }
            // Guessing tok_a through `equals`, as fast as the host answers.
            "equals-oracle" => {
                let (mut answered, mut refused) = (0, None);
                for i in 0..1_000 {
                    match secrets::equals("tok_a", format!("guess-{i}").as_bytes()) {
                        Ok(_) => answered += 1,
                        Err(e) => {
                            refused.get_or_insert(format!("{e:?}"));
                        }
                    }
                }
                attempts.note("answered", answered.to_string());
                attempts.note("refused", refused.unwrap_or_default());
            }
            "reply-101" | "reply-999" => {
                events.push(ReceivedEvent {
                    raw: raw(id.clone(), "hostile.reply"),
                    records: Ok(vec![]),
                });
                reply = Some(WebhookReply {
                    status: if setting(&ctx, "mode") == "reply-101" {
                        101
                    } else {
                        999
                    },
                    content_type: "text/plain".into(),
                    body: b"upgrade me".to_vec(),
                });
            }
            "huge-id" => events.push(ReceivedEvent {
                raw: raw("i".repeat(100_000), "hostile.huge-id"),
                records: Ok(vec![]),
            }),
            _ => events.push(ReceivedEvent {
                raw: raw(id.clone(), "hostile.ok"),
                records: Ok(vec![]),
            }),
        }
        let revoked = (setting(&ctx, "mode") == "huge-revoked").then(|| "v".repeat(HUGE));
        Ok(WebhookOutcome {
            events,
            reply: reply.or_else(|| Some(attempts.reply())),
            revoked,
        })
    }

    fn poll(ctx: CallContext, _: Option<String>) -> Result<PollResult, DriverError> {
        if setting(&ctx, "mode") == "huge-poll-error" {
            return Err(DriverError::Internal("p".repeat(HUGE)));
        }
        Ok(PollResult {
            events: vec![],
            next_cursor: None,
            has_more: false,
            retry_after_ms: None,
        })
    }

    fn backfill_cursor(
        _: CallContext,
        _: sluice::driver::types::Datetime,
    ) -> Result<String, DriverError> {
        Ok(String::new())
    }
}

impl normalize::Guest for Hostile {
    fn normalize(_: CallContext, _: RawEvent) -> Result<Vec<CanonicalRecord>, DriverError> {
        Ok(vec![])
    }
}

impl auth::Guest for Hostile {
    fn authorize_url(_: CallContext, _: auth::Authorization) -> Result<String, DriverError> {
        Err(DriverError::Unsupported("hostile has no OAuth".into()))
    }

    fn exchange_code(_: CallContext, _: auth::Callback) -> Result<TokenGrant, DriverError> {
        Err(DriverError::Unsupported("hostile has no OAuth".into()))
    }

    fn refresh(_: CallContext) -> Result<TokenGrant, DriverError> {
        Err(DriverError::Unsupported("hostile has no tokens".into()))
    }

    fn validate_scopes(_: CallContext, _: Vec<String>) -> Result<ScopeCheck, DriverError> {
        Ok(ScopeCheck { missing: vec![] })
    }

    fn revoke(_: CallContext) -> Result<(), DriverError> {
        Err(DriverError::Unsupported("hostile has no tokens".into()))
    }
}

export!(Hostile);
