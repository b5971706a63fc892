//! `sluice driver test FILE --fixtures DIR [--update]`: every fixture of a directory through
//! the driver, its output compared with the snapshot beside it.
//!
//! `NAME.request.json` is a webhook delivery, `NAME.poll.json` a poll served from recorded
//! responses; `NAME.snapshot.json` is the output expected of either (the format is in
//! `docs/driver-guide.md`, 9.4). A fixture pins its clock, and nothing reaches the network:
//! an outbound request without a recording fails the fixture.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::Value;

use super::diff::{self, Difference};
use super::run::{self, Harness, Inputs};
use crate::capabilities::Clock;
use crate::capabilities::recorded::{RecordedHttp, RecordedResponse};
use crate::scheduler::MAX_BACKFILL_PAGES;
use crate::wit::types::IncomingRequest;

const REQUEST_SUFFIX: &str = ".request.json";
const POLL_SUFFIX: &str = ".poll.json";
const SNAPSHOT_SUFFIX: &str = ".snapshot.json";
/// Differences printed per fixture; the rest are counted.
const MAX_SHOWN: usize = 20;

/// How the run treats snapshots.
#[derive(Debug, Clone, Copy)]
pub struct Mode {
    /// Write the snapshots instead of comparing.
    pub update: bool,
    /// Print every fixture's output.
    pub print: bool,
}

/// Headers as an object (`{"Name": "value"}`) or, to repeat a name or keep an order, a
/// list of `[name, value]` pairs.
#[derive(Deserialize, Default)]
#[serde(untagged)]
enum Headers {
    #[default]
    None,
    Map(BTreeMap<String, String>),
    Pairs(Vec<(String, String)>),
}

impl Headers {
    fn into_pairs(self) -> Vec<(String, String)> {
        match self {
            Headers::None => Vec::new(),
            Headers::Map(map) => map.into_iter().collect(),
            Headers::Pairs(pairs) => pairs,
        }
    }
}

/// A body: inline text, a file (relative to the fixture), or inline JSON sent as compact
/// text. At most one; none is an empty body.
#[derive(Deserialize, Default)]
struct Body {
    body: Option<String>,
    body_file: Option<PathBuf>,
    body_json: Option<Value>,
}

impl Body {
    fn bytes(self, base: &Path) -> anyhow::Result<Vec<u8>> {
        match (self.body, self.body_file, self.body_json) {
            (None, None, None) => Ok(Vec::new()),
            (Some(text), None, None) => Ok(text.into_bytes()),
            (None, Some(file), None) => {
                let path = base.join(&file);
                std::fs::read(&path)
                    .with_context(|| format!("body_file {}: cannot read it", path.display()))
            }
            (None, None, Some(json)) => Ok(json.to_string().into_bytes()),
            _ => bail!("give at most one of body, body_file and body_json"),
        }
    }
}

const BODY_FIELDS: &[&str] = &["body", "body_file", "body_json"];
const RESPONSE_FIELDS: &[&str] = &["method", "url", "status", "headers"];
const COMMON_FIELDS: &[&str] = &[
    "description",
    "now",
    "secrets",
    "settings",
    "state",
    "responses",
    "ignore",
];
const WEBHOOK_FIELDS: &[&str] = &["method", "path", "query", "headers"];
const POLL_FIELDS: &[&str] = &["cursor", "pages"];

/// Refuse a field the format does not have (serde's `deny_unknown_fields` does not work
/// with the flattened parts), so a misspelt `body_fle` is an error, not an empty body.
fn known_fields(value: &Value, what: &str, lists: &[&[&str]]) -> anyhow::Result<()> {
    let Some(map) = value.as_object() else {
        bail!("{what} is not a JSON object");
    };
    for key in map.keys() {
        if !lists.iter().any(|list| list.contains(&key.as_str())) {
            let expected: Vec<&str> = lists.iter().flat_map(|l| l.iter().copied()).collect();
            bail!(
                "{what}: unknown field `{key}`, expected one of {}",
                expected.join(", ")
            );
        }
    }
    Ok(())
}

/// One recorded answer, as a fixture writes it.
#[derive(Deserialize)]
struct Response {
    method: String,
    url: String,
    #[serde(default = "ok_status")]
    status: u16,
    #[serde(default)]
    headers: Headers,
    #[serde(flatten)]
    body: Body,
}

fn ok_status() -> u16 {
    200
}

/// What both kinds of fixture have.
#[derive(Deserialize)]
struct Common {
    /// What the fixture is about (for the reader; not used).
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    /// The pinned clock, Unix seconds.
    now: u64,
    #[serde(default)]
    secrets: BTreeMap<String, String>,
    #[serde(default = "empty_object")]
    settings: Value,
    #[serde(default)]
    state: BTreeMap<String, String>,
    #[serde(default)]
    responses: Vec<Response>,
    /// JSON pointers masked in the output before comparing (`*` for every element).
    #[serde(default)]
    ignore: Vec<String>,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

/// `NAME.request.json`.
#[derive(Deserialize)]
struct Webhook {
    #[serde(default = "post")]
    method: String,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    query: String,
    #[serde(default)]
    headers: Headers,
    #[serde(flatten)]
    body: Body,
    #[serde(flatten)]
    common: Common,
}

fn post() -> String {
    "POST".into()
}

/// `NAME.poll.json`.
#[derive(Deserialize)]
struct Poll {
    /// The cursor the first page starts from (`null`: the first poll ever).
    #[serde(default)]
    cursor: Option<String>,
    /// Most pages walked while the driver says `has_more` (default 1).
    #[serde(default = "one")]
    pages: usize,
    #[serde(flatten)]
    common: Common,
}

fn one() -> usize {
    1
}

/// A fixture found in the directory.
struct Found {
    name: String,
    path: PathBuf,
    poll: bool,
}

impl Found {
    fn kind(&self) -> &'static str {
        if self.poll { "poll" } else { "webhook" }
    }

    fn snapshot(&self) -> PathBuf {
        self.path
            .with_file_name(format!("{}{SNAPSHOT_SUFFIX}", self.name))
    }
}

/// The fixtures in `dir`, by name.
fn find(dir: &Path) -> anyhow::Result<Vec<Found>> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("reading fixtures in {}", dir.display()))?;
    let mut found: Vec<Found> = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("reading fixtures in {}", dir.display()))?
            .path();
        let Some(file) = path.file_name().and_then(|f| f.to_str()) else {
            continue;
        };
        let (name, poll) = if let Some(name) = file.strip_suffix(REQUEST_SUFFIX) {
            (name, false)
        } else if let Some(name) = file.strip_suffix(POLL_SUFFIX) {
            (name, true)
        } else {
            continue;
        };
        if found.iter().any(|f| f.name == name) {
            bail!(
                "{}: two fixtures are named {name:?} ({name}{REQUEST_SUFFIX} and {name}{POLL_SUFFIX}); they would share {name}{SNAPSHOT_SUFFIX}",
                dir.display()
            );
        }
        found.push(Found {
            name: name.to_string(),
            path: path.clone(),
            poll,
        });
    }
    if found.is_empty() {
        bail!(
            "no fixtures in {} (files named NAME{REQUEST_SUFFIX} or NAME{POLL_SUFFIX})",
            dir.display()
        );
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// A fixture read and ready to run.
struct Loaded {
    inputs: Inputs,
    http: Arc<RecordedHttp>,
    ignore: Vec<String>,
    run: Run,
}

enum Run {
    Webhook(IncomingRequest),
    Poll {
        cursor: Option<String>,
        pages: usize,
    },
}

fn load_common(
    common: Common,
    base: &Path,
) -> anyhow::Result<(Inputs, Arc<RecordedHttp>, Vec<String>)> {
    let mut responses = Vec::with_capacity(common.responses.len());
    for (i, r) in common.responses.into_iter().enumerate() {
        let url = url::Url::parse(&r.url)
            .with_context(|| format!("responses[{i}]: url {:?} is not a URL", r.url))?;
        responses.push(RecordedResponse {
            method: r.method,
            url,
            status: r.status,
            headers: r.headers.into_pairs(),
            body: r
                .body
                .bytes(base)
                .with_context(|| format!("responses[{i}]"))?,
        });
    }
    let http = Arc::new(RecordedHttp::new(responses));
    let inputs = Inputs {
        settings: common.settings,
        secrets: bytes_map(common.secrets),
        state: bytes_map(common.state),
        http: Some(http.clone()),
        clock: Some(Clock::Pinned(Duration::from_secs(common.now))),
    };
    Ok((inputs, http, common.ignore))
}

fn bytes_map(map: BTreeMap<String, String>) -> HashMap<String, Vec<u8>> {
    map.into_iter().map(|(k, v)| (k, v.into_bytes())).collect()
}

fn load(found: &Found) -> anyhow::Result<Loaded> {
    let text = std::fs::read(&found.path).context("cannot read it")?;
    let base = found.path.parent().unwrap_or(Path::new("."));
    let value: Value = serde_json::from_slice(&text).context("not JSON")?;
    let own = if found.poll {
        POLL_FIELDS
    } else {
        WEBHOOK_FIELDS
    };
    let mut lists = vec![own, COMMON_FIELDS];
    if !found.poll {
        lists.push(BODY_FIELDS);
    }
    known_fields(&value, "the fixture", &lists)?;
    for (i, r) in value["responses"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        known_fields(
            r,
            &format!("responses[{i}]"),
            &[RESPONSE_FIELDS, BODY_FIELDS],
        )?;
    }
    if found.poll {
        let poll: Poll = serde_json::from_slice(&text).context("not a poll fixture")?;
        if poll.pages == 0 || poll.pages > MAX_BACKFILL_PAGES {
            bail!("pages must be 1 to {MAX_BACKFILL_PAGES}");
        }
        let (inputs, http, ignore) = load_common(poll.common, base)?;
        Ok(Loaded {
            inputs,
            http,
            ignore,
            run: Run::Poll {
                cursor: poll.cursor,
                pages: poll.pages,
            },
        })
    } else {
        let hook: Webhook = serde_json::from_slice(&text).context("not a webhook fixture")?;
        let body = hook.body.bytes(base)?;
        let (inputs, http, ignore) = load_common(hook.common, base)?;
        Ok(Loaded {
            inputs,
            http,
            ignore,
            run: Run::Webhook(IncomingRequest {
                method: hook.method,
                path: hook
                    .path
                    .unwrap_or_else(|| format!("/webhooks/{}", run::INSTALLATION)),
                query: hook.query,
                headers: hook.headers.into_pairs(),
                body,
            }),
        })
    }
}

/// What became of one fixture.
enum Verdict {
    Passed,
    Written,
    Differs(Vec<Difference>),
    /// The fixture could not be run or checked.
    Error(String),
}

/// Run one fixture: its output, masked, or why it cannot be checked.
async fn output(harness: &Harness, found: &Found) -> Result<Value, String> {
    let name = found.path.display();
    let loaded = load(found).map_err(|e| format!("{name}: {e:#}"))?;
    let mut out = match loaded.run {
        Run::Webhook(request) => harness.webhook(loaded.inputs, request).await,
        Run::Poll { cursor, pages } => harness.poll(loaded.inputs, cursor, pages).await,
    };
    let unmatched: Vec<String> = loaded
        .http
        .exchanges()
        .into_iter()
        .filter(|e| e.status.is_none())
        .map(|e| format!("{} {}", e.method, e.url))
        .collect();
    if !unmatched.is_empty() {
        return Err(format!(
            "{name}: the driver made requests the fixture has no recorded response for: {} (add them to `responses`)",
            unmatched.join(", ")
        ));
    }
    for unused in loaded.http.unused() {
        println!("  note: {name}: recorded response {unused} was never requested");
    }
    for pointer in &loaded.ignore {
        diff::mask(&mut out, pointer).map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(out)
}

async fn check(harness: &Harness, found: &Found, mode: Mode) -> Verdict {
    let out = match output(harness, found).await {
        Ok(out) => out,
        Err(e) => return Verdict::Error(e),
    };
    if mode.print {
        println!("{}", pretty(&out));
    }
    let snapshot = found.snapshot();
    let expected = match std::fs::read(&snapshot) {
        Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
            Ok(value) => Some(value),
            Err(e) if !mode.update => {
                return Verdict::Error(format!("{}: not JSON: {e}", snapshot.display()));
            }
            Err(_) => None,
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Verdict::Error(format!("{}: cannot read it: {e}", snapshot.display())),
    };
    match expected {
        Some(expected) => {
            let found = diff::differences(&expected, &out);
            if found.is_empty() {
                Verdict::Passed
            } else if mode.update {
                write(&snapshot, &out)
            } else {
                Verdict::Differs(found)
            }
        }
        None if mode.update => write(&snapshot, &out),
        None => Verdict::Error(format!(
            "{}: no snapshot (run with --update to write it from this output)",
            snapshot.display()
        )),
    }
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

fn write(snapshot: &Path, out: &Value) -> Verdict {
    match std::fs::write(snapshot, format!("{}\n", pretty(out))) {
        Ok(()) => Verdict::Written,
        Err(e) => Verdict::Error(format!("{}: cannot write it: {e}", snapshot.display())),
    }
}

/// Run every fixture in `dir` and report; exit 1 on any difference or error.
pub async fn run(harness: &Harness, dir: &Path, mode: Mode) -> anyhow::Result<ExitCode> {
    let fixtures = find(dir)?;
    let (mut passed, mut written, mut failed) = (0, 0, 0);
    for found in &fixtures {
        let label = format!("{} ({})", found.name, found.kind());
        match check(harness, found, mode).await {
            Verdict::Passed => {
                passed += 1;
                println!("ok      {label}");
            }
            Verdict::Written => {
                written += 1;
                println!("written {label}: {}", found.snapshot().display());
            }
            Verdict::Differs(differences) => {
                failed += 1;
                println!(
                    "FAIL    {label}: {} field(s) differ from {}",
                    differences.len(),
                    found.snapshot().display()
                );
                for d in differences.iter().take(MAX_SHOWN) {
                    println!("  {d}");
                }
                if differences.len() > MAX_SHOWN {
                    println!("  … and {} more", differences.len() - MAX_SHOWN);
                }
            }
            Verdict::Error(e) => {
                failed += 1;
                println!("ERROR   {label}: {e}");
            }
        }
    }
    println!(
        "{} fixture(s): {passed} passed, {written} snapshot(s) written, {failed} failed",
        fixtures.len()
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
