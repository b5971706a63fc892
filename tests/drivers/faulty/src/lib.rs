//! `faulty`: a test-only driver whose behaviour is chosen by the installation's `mode`
//! setting. It traps, loops forever, refuses, floods the host with output, allocates
//! past the memory limit, fetches the settings' `url`, or tries to send its `token` secret
//! to that `url` (`leak-bearer`, `leak-header`, under a header it did not declare), or to
//! overwrite it from an unauthenticated response (`plant`); or it recurses without end,
//! fails with a 16 MiB error text, sends requests until the budget stops it, floods the
//! log, or tries to read the environment, files and sockets (`escape`); or it returns
//! 100,000 events whose payloads all alias one 4 MiB buffer (`aliased-output`, 400 GB if
//! the host copied each), or opens WASI handles without closing them (`resource-flood`).
//! In `log-enabled` mode it answers what `log.enabled` said for each level, before and
//! after it spent its log budget (`{"before": [trace, …, error], "spent": […]}`).
//! In `jwt` mode it is a well-behaved JWT-authenticated driver: the request's bearer token
//! is verified against the key set at the settings' `url`; its claims are the payload and
//! its `jti` the event id.
//! A request header
//! `x-faulty-route: loop` makes `route-key` loop. So the
//! end-to-end tests can check that one bad driver fails only its own calls and that
//! outbound grants and credential bindings hold.
//!
//! With the `bad-metadata` feature its metadata has an invalid id, so the host must
//! refuse to load it.
//!
//! Written against the WIT world with `wit-bindgen` directly (not the SDK) on purpose:
//! the host's isolation guarantees must not depend on SDK behaviour.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "sluice:driver/driver",
});

use exports::sluice::driver::auth::{self, ScopeCheck, TokenGrant};
use exports::sluice::driver::ingest::{self, PollResult, RawEvent, ReceivedEvent, WebhookOutcome};
use exports::sluice::driver::metadata::{self, AuthKind, DriverInfo, IngestionMode};
use exports::sluice::driver::normalize;
use sluice::driver::canonical::{CanonicalRecord, Change, RecordData, Unmapped};
use sluice::driver::http;
use sluice::driver::types::{CallContext, Datetime, DriverError, IncomingRequest};

const SETTINGS_SCHEMA: &str = r#"{"type":"object","properties":{"mode":{"enum":["ok","trap","loop","bad-request","unauthorized","normalize-error","huge-output","oom","fetch","leak-bearer","leak-header","plant","recurse","huge-error","many-requests","log-flood","escape","aliased-output","resource-flood","jwt","log-enabled"]},"url":{"type":"string"}},"additionalProperties":false}"#;

/// The id in the metadata: invalid in the `bad-metadata` build.
#[cfg(not(feature = "bad-metadata"))]
const DRIVER_ID: &str = "faulty";
#[cfg(feature = "bad-metadata")]
const DRIVER_ID: &str = "Bad Id!";

/// What `oom` mode allocates and touches: far over the host's 64 MiB memory cap.
const OOM_BYTES: usize = 200 << 20;

/// Number of events and size of each payload in `huge-output` mode (10,000 × 1 KiB).
const HUGE_COUNT: usize = 10_000;
const HUGE_PAYLOAD: usize = 1024;

struct Faulty;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Ok,
    Trap,
    Loop,
    BadRequest,
    Unauthorized,
    NormalizeError,
    HugeOutput,
    Oom,
    Fetch,
    LeakBearer,
    LeakHeader,
    Plant,
    Recurse,
    HugeError,
    ManyRequests,
    LogFlood,
    Escape,
    AliasedOutput,
    ResourceFlood,
    Jwt,
    LogEnabled,
}

/// The secret `leak-*` modes try to send where it is not bound.
const TOKEN: &str = "token";

/// Reads `mode` from the settings JSON text. The host validated it against the schema,
/// so a minimal scan is enough; anything unexpected means `ok`.
fn mode(ctx: &CallContext) -> Mode {
    match json_string_field(ctx.settings.as_bytes(), "mode").as_deref() {
        Some("trap") => Mode::Trap,
        Some("loop") => Mode::Loop,
        Some("bad-request") => Mode::BadRequest,
        Some("unauthorized") => Mode::Unauthorized,
        Some("normalize-error") => Mode::NormalizeError,
        Some("huge-output") => Mode::HugeOutput,
        Some("oom") => Mode::Oom,
        Some("fetch") => Mode::Fetch,
        Some("leak-bearer") => Mode::LeakBearer,
        Some("leak-header") => Mode::LeakHeader,
        Some("plant") => Mode::Plant,
        Some("recurse") => Mode::Recurse,
        Some("huge-error") => Mode::HugeError,
        Some("many-requests") => Mode::ManyRequests,
        Some("log-flood") => Mode::LogFlood,
        Some("escape") => Mode::Escape,
        Some("aliased-output") => Mode::AliasedOutput,
        Some("resource-flood") => Mode::ResourceFlood,
        Some("jwt") => Mode::Jwt,
        Some("log-enabled") => Mode::LogEnabled,
        _ => Mode::Ok,
    }
}

/// Finds the first `"<key>": "<string>"` pair in a JSON object and returns the string.
/// Deliberately minimal (no escapes in keys, simple escapes in values): this driver
/// has no JSON dependency.
fn json_string_field(json: &[u8], key: &str) -> Option<String> {
    let text = std::str::from_utf8(json).ok()?;
    let needle = format!("\"{key}\"");
    let mut from = 0;
    while let Some(pos) = text[from..].find(&needle) {
        let after = from + pos + needle.len();
        let rest = text[after..].trim_start();
        if let Some(rest) = rest.strip_prefix(':') {
            let rest = rest.trim_start();
            let rest = rest.strip_prefix('"')?;
            let mut out = String::new();
            let mut chars = rest.chars();
            while let Some(c) = chars.next() {
                match c {
                    '"' => return Some(out),
                    '\\' => out.push(chars.next()?),
                    c => out.push(c),
                }
            }
            return None;
        }
        from = after;
    }
    None
}

impl metadata::Guest for Faulty {
    fn get() -> DriverInfo {
        #[cfg(feature = "loop-metadata")]
        spin_forever();
        #[allow(unreachable_code)]
        DriverInfo {
            id: DRIVER_ID.into(),
            // The fixed build is the next version of the driver.
            version: if cfg!(feature = "changed-normalize") {
                "0.2.0"
            } else if cfg!(feature = "fixed-normalize") {
                "0.1.1"
            } else {
                "0.1.0"
            }
            .into(),
            display_name: "Faulty (test driver)".into(),
            auth_kind: AuthKind::None,
            ingestion_modes: vec![IngestionMode::Webhook],
            settings_schema: SETTINGS_SCHEMA.into(),
            outbound_hosts: vec!["https://api.example.com".into()],
            // Bound to its declared origin; `leak-*` modes try to send it elsewhere.
            secrets: vec![metadata::SecretSpec {
                name: TOKEN.into(),
                description: "A token only https://api.example.com may receive".into(),
                required: false,
                sent_to: vec!["https://api.example.com".into()],
                header: Some("X-Faulty-Token".into()),
            }],
            wit_version: "0.6.1".into(),
            webhook_signing: vec![],
        }
    }
}

impl auth::Guest for Faulty {
    fn authorize_url(_: CallContext, _: auth::Authorization) -> Result<String, DriverError> {
        Err(DriverError::Unsupported("faulty has no OAuth".into()))
    }

    fn exchange_code(_: CallContext, _: auth::Callback) -> Result<TokenGrant, DriverError> {
        Err(DriverError::Unsupported("faulty has no OAuth".into()))
    }

    fn refresh(_: CallContext) -> Result<TokenGrant, DriverError> {
        Err(DriverError::Unsupported("faulty has no tokens".into()))
    }

    fn validate_scopes(_: CallContext, _: Vec<String>) -> Result<ScopeCheck, DriverError> {
        Ok(ScopeCheck { missing: vec![] })
    }

    fn revoke(_: CallContext) -> Result<(), DriverError> {
        Err(DriverError::Unsupported("faulty has no tokens".into()))
    }
}

impl ingest::Guest for Faulty {
    fn route_key(request: IncomingRequest) -> Option<String> {
        let loops = request
            .headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("x-faulty-route") && v == "loop");
        if loops {
            spin_forever();
        }
        None
    }

    fn receive(ctx: CallContext, request: IncomingRequest) -> Result<WebhookOutcome, DriverError> {
        if mode(&ctx) == Mode::Unauthorized {
            return Err(DriverError::Unauthorized("mode is unauthorized".into()));
        }
        let events: Vec<RawEvent> = match mode(&ctx) {
            Mode::Trap => panic!("faulty driver: trap mode"),
            Mode::Loop => spin_forever(),
            Mode::BadRequest => return Err(DriverError::BadRequest("mode is bad-request".into())),
            Mode::HugeOutput => (0..HUGE_COUNT)
                .map(|i| RawEvent {
                    provider_event_id: format!("huge_{i}"),
                    event_type: "faulty.huge".into(),
                    account_key: None,
                    occurred_at: None,
                    payload: vec![b'x'; HUGE_PAYLOAD],
                    api_version: None,
                })
                .collect(),
            Mode::Oom => {
                let touched = touch_memory(OOM_BYTES);
                return Err(DriverError::Internal(format!(
                    "allocated and read {touched} bytes past the memory limit"
                )));
            }
            Mode::Fetch => {
                let url = json_string_field(ctx.settings.as_bytes(), "url")
                    .ok_or_else(|| DriverError::InvalidSettings("fetch needs `url`".into()))?;
                vec![raw_event(&request, fetch(url, None)?)?]
            }
            Mode::LeakBearer | Mode::LeakHeader => {
                let url = json_string_field(ctx.settings.as_bytes(), "url")
                    .ok_or_else(|| DriverError::InvalidSettings("leak needs `url`".into()))?;
                let credential = match mode(&ctx) {
                    Mode::LeakBearer => http::Credential::Bearer(TOKEN.into()),
                    _ => http::Credential::Header(http::HeaderCredential {
                        name: "X-Leak".into(),
                        secret: TOKEN.into(),
                    }),
                };
                vec![raw_event(&request, fetch(url, Some(credential))?)?]
            }
            Mode::Recurse => {
                let depth = recurse(std::hint::black_box(0));
                return Err(DriverError::Internal(format!(
                    "recursed {depth} deep and returned"
                )));
            }
            Mode::HugeError => return Err(DriverError::Internal("E".repeat(16 << 20))),
            Mode::ManyRequests => {
                let url = json_string_field(ctx.settings.as_bytes(), "url")
                    .ok_or_else(|| DriverError::InvalidSettings("needs `url`".into()))?;
                let mut sent = 0;
                let mut last = String::new();
                for _ in 0..5_000 {
                    match fetch(url.clone(), None) {
                        Ok(_) => sent += 1,
                        Err(e) => {
                            last = format!("{e:?}");
                            if last.contains("LimitExceeded") {
                                break;
                            }
                        }
                    }
                }
                return Err(DriverError::Internal(format!("sent {sent}, then {last}")));
            }
            Mode::LogFlood => {
                let line = "L".repeat(4096);
                for _ in 0..10_000 {
                    sluice::driver::log::log(sluice::driver::log::Level::Info, &line);
                }
                vec![raw_event(&request, b"{}".to_vec())?]
            }
            // What it saw, as the error (for the operator's log).
            Mode::Escape => return Err(DriverError::Internal(escape_attempts())),
            Mode::AliasedOutput => return Ok(aliased_outcome()),
            Mode::LogEnabled => return log_enabled_outcome(ctx, &request),
            // The event is named by the verified token's `jti`, so a test sees the claims.
            Mode::Jwt => {
                let claims = verified_claims(&ctx, &request)?;
                let jti = json_string_field(&claims, "jti")
                    .ok_or_else(|| DriverError::BadRequest("the token has no `jti`".into()))?;
                vec![RawEvent {
                    provider_event_id: jti,
                    event_type: "faulty.jwt".into(),
                    account_key: None,
                    occurred_at: None,
                    payload: claims,
                    api_version: None,
                }]
            }
            Mode::ResourceFlood => {
                let opened = flood_resources();
                return Err(DriverError::Internal(format!(
                    "opened {opened} handles and returned"
                )));
            }
            Mode::Plant => {
                let url = json_string_field(ctx.settings.as_bytes(), "url")
                    .ok_or_else(|| DriverError::InvalidSettings("plant needs `url`".into()))?;
                let request_out = http::Request {
                    method: http::Method::Get,
                    url,
                    headers: vec![],
                    body: http::Body::Empty,
                    credential: None,
                    capture: vec![http::Capture {
                        pointer: "/fetched".into(),
                        secret: TOKEN.into(),
                    }],
                    timeout_ms: Some(5_000),
                };
                let body = http::send(&request_out)
                    .map_err(|e| DriverError::Internal(format!("{e:?}")))?
                    .body;
                vec![raw_event(&request, body)?]
            }
            Mode::Ok | Mode::Unauthorized | Mode::NormalizeError => {
                let payload = request.body.clone();
                vec![raw_event(&request, payload)?]
            }
        };
        let events = events
            .into_iter()
            .map(|raw| ReceivedEvent {
                records: <Faulty as normalize::Guest>::normalize(ctx.clone(), raw.clone()),
                raw,
            })
            .collect();
        Ok(WebhookOutcome {
            events,
            reply: None,
            revoked: None,
        })
    }

    fn backfill_cursor(_: CallContext, _: Datetime) -> Result<String, DriverError> {
        Err(DriverError::Unsupported("faulty is webhook-only".into()))
    }

    fn poll(ctx: CallContext, _: Option<String>) -> Result<PollResult, DriverError> {
        if mode(&ctx) == Mode::Loop {
            spin_forever();
        }
        Err(DriverError::Unsupported("faulty is webhook-only".into()))
    }
}

/// `log-enabled`: the delivery's event, and a reply saying what `log.enabled` answered
/// for trace, debug, info, warn and error, then again once 100 trace messages (dropped by
/// the filter or not, they count) have spent the call's log budget.
fn log_enabled_outcome(
    ctx: CallContext,
    request: &IncomingRequest,
) -> Result<WebhookOutcome, DriverError> {
    use sluice::driver::log::{self, Level};
    let answers = || {
        let each = [
            Level::Trace,
            Level::Debug,
            Level::Info,
            Level::Warn,
            Level::Error,
        ]
        .map(|level| log::enabled(level).to_string());
        format!("[{}]", each.join(","))
    };
    let before = answers();
    for _ in 0..100 {
        log::log(Level::Trace, "spending the log budget");
    }
    let spent = answers();
    let raw = raw_event(request, request.body.clone())?;
    Ok(WebhookOutcome {
        events: vec![ReceivedEvent {
            records: <Faulty as normalize::Guest>::normalize(ctx, raw.clone()),
            raw,
        }],
        reply: Some(ingest::WebhookReply {
            status: 200,
            content_type: "application/json".into(),
            body: format!(r#"{{"before":{before},"spent":{spent}}}"#).into_bytes(),
        }),
        revoked: None,
    })
}

/// One `faulty.event` with the request body's `id` and the given payload.
fn raw_event(request: &IncomingRequest, payload: Vec<u8>) -> Result<RawEvent, DriverError> {
    let id = json_string_field(&request.body, "id")
        .filter(|id| !id.is_empty())
        .ok_or_else(|| DriverError::BadRequest("body has no string `id`".into()))?;
    Ok(RawEvent {
        provider_event_id: id,
        event_type: "faulty.event".into(),
        account_key: None,
        occurred_at: None,
        payload,
        api_version: None,
    })
}

/// GET `url` through the host; the body of a `200`, or the error as `internal`.
fn fetch(url: String, credential: Option<http::Credential>) -> Result<Vec<u8>, DriverError> {
    let request = http::Request {
        method: http::Method::Get,
        url,
        headers: vec![],
        body: http::Body::Empty,
        credential,
        capture: vec![],
        timeout_ms: Some(5_000),
    };
    match http::send(&request) {
        Ok(response) if response.status == 200 => Ok(response.body),
        Ok(response) => Err(DriverError::Internal(format!("status {}", response.status))),
        Err(e) => Err(DriverError::Internal(format!("{e:?}"))),
    }
}

/// Allocates `bytes`, writes every byte and reads them all back; the host's memory
/// limit must stop it first.
fn touch_memory(bytes: usize) -> usize {
    let buffer = std::hint::black_box(vec![1u8; bytes]);
    buffer.iter().map(|&b| usize::from(b)).sum()
}

/// Recurses until the stack runs out; the host must turn that into a trap.
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth; 64]);
    recurse(frame[depth as usize % 64] + 1) + 1
}

/// What the sandbox lets a driver see of the machine: the environment, files, sockets.
/// Returned as JSON text; every one of them must come back empty or as an error.
fn escape_attempts() -> String {
    let vars = std::env::vars().count();
    let args = std::env::args().count();
    let file = match std::fs::read("/etc/passwd") {
        Ok(bytes) => format!("read {} bytes", bytes.len()),
        Err(_) => "error".to_string(),
    };
    let dir = match std::fs::read_dir("/") {
        Ok(_) => "listed".to_string(),
        Err(_) => "error".to_string(),
    };
    let socket = match std::net::TcpStream::connect("127.0.0.1:22") {
        Ok(_) => "connected".to_string(),
        Err(_) => "error".to_string(),
    };
    let dns = match std::net::ToSocketAddrs::to_socket_addrs(&("localhost", 80)) {
        Ok(mut addrs) => format!("resolved {}", addrs.next().is_some()),
        Err(_) => "error".to_string(),
    };
    format!(
        r#"escape: {{"vars":{vars},"args":{args},"file":"{file}","dir":"{dir}","socket":"{socket}","dns":"{dns}"}}"#
    )
}

/// The claims of the request's bearer token, verified against the key set at `url`.
fn verified_claims(ctx: &CallContext, request: &IncomingRequest) -> Result<Vec<u8>, DriverError> {
    use sluice::driver::secrets::{JwksError, verify_jwt_jwks};
    let url = json_string_field(ctx.settings.as_bytes(), "url")
        .ok_or_else(|| DriverError::InvalidSettings("jwt needs `url`".into()))?;
    let token = request
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        .and_then(|(_, v)| v.strip_prefix("Bearer "))
        .ok_or_else(|| DriverError::Unauthorized("no bearer token".into()))?;
    match verify_jwt_jwks(&url, token) {
        Ok(claims) => Ok(claims.into_bytes()),
        Err(JwksError::Invalid(m)) => Err(DriverError::Unauthorized(m)),
        Err(JwksError::Unavailable(m)) => Err(DriverError::Internal(format!("unavailable: {m}"))),
        Err(JwksError::Denied(m)) => Err(DriverError::Internal(format!("denied: {m}"))),
    }
}

/// Number of events in `aliased-output` mode, and the one buffer all their payloads point at.
const ALIASED_COUNT: usize = 100_000;
const ALIASED_PAYLOAD: usize = 4 << 20;

/// A webhook outcome whose 100,000 events all point at one 4 MiB payload: a few MiB of
/// guest memory that a host copying element by element would turn into 400 GB.
fn aliased_outcome() -> WebhookOutcome {
    let buffer = std::mem::ManuallyDrop::new(vec![b'a'; ALIASED_PAYLOAD]);
    let (ptr, len, cap) = (buffer.as_ptr() as *mut u8, buffer.len(), buffer.capacity());
    let events = (0..ALIASED_COUNT)
        .map(|i| {
            // SAFETY: deliberately not. Every payload claims the same allocation; this
            // driver exists to hand the host such a result. Nothing reads them in the
            // guest, and the instance is discarded after the call whatever happens in
            // post-return.
            let payload = unsafe { Vec::from_raw_parts(ptr, len, cap) };
            ReceivedEvent {
                raw: RawEvent {
                    provider_event_id: format!("aliased_{i}"),
                    event_type: "faulty.aliased".into(),
                    account_key: None,
                    occurred_at: None,
                    payload,
                    api_version: None,
                },
                records: Ok(vec![]),
            }
        })
        .collect();
    WebhookOutcome {
        events,
        reply: None,
        revoked: None,
    }
}

/// Opens monotonic-clock pollables without ever closing them, until the host refuses;
/// returns how many it got (the host must trap first).
fn flood_resources() -> usize {
    let mut opened = 0;
    for _ in 0..100_000 {
        std::mem::forget(wasip2::clocks::monotonic_clock::subscribe_duration(
            1_000_000_000,
        ));
        opened += 1;
    }
    opened
}

/// Never returns; the host's epoch deadline has to interrupt it.
fn spin_forever() -> ! {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

impl normalize::Guest for Faulty {
    fn normalize(ctx: CallContext, event: RawEvent) -> Result<Vec<CanonicalRecord>, DriverError> {
        // `normalize-error` fails, except in the fixed build (`faulty-fixed.wasm`), which
        // stands for a driver release that repairs past failures when they are replayed.
        if mode(&ctx) == Mode::NormalizeError && !cfg!(feature = "fixed-normalize") {
            return Err(DriverError::Internal("boom".into()));
        }
        Ok(vec![CanonicalRecord {
            change: Change::Observed,
            data: RecordData::Unmapped(Unmapped {
                external_id: Some(event.provider_event_id),
                object_type: Some(event.event_type),
                // The changed release (`faulty-next.wasm`) says why it has no mapping.
                reason: cfg!(feature = "changed-normalize")
                    .then(|| "not mapped by faulty 0.2.0".to_string()),
            }),
            warnings: vec![],
            enriched_from: vec![],
        }])
    }
}

export!(Faulty);
