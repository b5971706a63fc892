//! `GET /v1/openapi.json`: the document is valid OpenAPI 3.1 (the official JSON Schema,
//! vendored in `tests/fixtures/openapi`), names exactly the (method, path) pairs the server
//! answers, and the same ones as `docs/admin-api.md`; and what the server answers matches
//! the schemas the document gives.
//!
//! Routes on paths the document does not name cannot exist: the router is built from the
//! same `routes!` lists as the document (`host/src/server/mod.rs`), which is why the probe
//! below only has to go through the documented paths (every method on each).

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{Value, json};
use sluice_testkit::{Backend, Sluice, fixture_json, stripe_charge_payload, stripe_header};

/// What the router's fallback answers for a path that is no route.
const NO_ROUTE: &str = "no such route";
/// What `require_admin` answers a request without a token.
const NO_TOKEN: &str = "missing `Authorization: Bearer <admin token>`";
const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// One answer, with the headers the checks read.
#[derive(Clone)]
struct Answer {
    status: u16,
    content_type: String,
    text: String,
    json: Value,
}

/// A request to `path`; with `token`, as the admin; `body` is sent as JSON.
async fn call(
    sluice: &Sluice,
    method: &str,
    path: &str,
    token: bool,
    body: Option<Value>,
) -> Answer {
    let client = reqwest::Client::new();
    let method = Method::from_bytes(method.as_bytes()).expect("a method");
    let mut request = client.request(method, sluice.url(path));
    if token {
        request = request.bearer_auth(&sluice.admin_token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    answer(request).await
}

async fn answer(request: reqwest::RequestBuilder) -> Answer {
    let resp = request.send().await.expect("the server answers");
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or_default().to_string())
        .unwrap_or_default();
    let text = resp.text().await.expect("a body");
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer {
        status,
        content_type,
        text,
        json,
    }
}

/// The served document (no token needed).
async fn document(sluice: &Sluice) -> Value {
    let resp = call(sluice, "GET", "/v1/openapi.json", false, None).await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    assert_eq!(resp.content_type, "application/json");
    assert!(resp.json.is_object(), "{}", resp.text);
    resp.json
}

/// Every (METHOD, path) the document names.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let paths = doc["paths"].as_object().expect("paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            let item = item.as_object().expect("a path item");
            METHODS
                .iter()
                .filter(|m| item.contains_key(&m.to_lowercase()))
                .map(move |m| (m.to_string(), path.clone()))
        })
        .collect()
}

fn operation<'a>(doc: &'a Value, method: &str, path: &str) -> &'a Value {
    let op = &doc["paths"][path][method.to_lowercase()];
    assert!(op.is_object(), "the document has no {method} {path}");
    op
}

/// A documented path with every `{parameter}` filled in.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|s| if s.starts_with('{') { "probe_1" } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

/// Every `$ref` in `value`.
fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("$ref", Value::String(target)) => out.push(target),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_valid_openapi_3_1() {
    let Some(sluice) = Sluice::start(Backend::Sqlite).await else {
        return;
    };
    let doc = document(&sluice).await;
    let schema = fixture_json("openapi/oas-3.1-schema-2022-10-07.json");
    let validator = jsonschema::validator_for(&schema).expect("the OpenAPI 3.1 schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(&doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(doc["openapi"], "3.1.0");

    // The validator is not vacuous: documents the specification forbids are refused.
    let mut broken = doc.clone();
    broken.as_object_mut().unwrap().remove("info");
    assert!(!validator.is_valid(&broken), "a document without info");
    let mut broken = doc.clone();
    broken["paths"]["/v1/drivers"]["get"]["responses"]["20x"] = json!({"description": "?"});
    assert!(!validator.is_valid(&broken), "a response code `20x`");
    let mut broken = doc.clone();
    broken["paths"]["/v1/drivers"]["get"]["parameters"] = json!([{"name": "x", "in": "body"}]);
    assert!(!validator.is_valid(&broken), "a parameter `in: body`");

    // What the JSON Schema cannot say: each `$ref` resolves, operation ids are unique, and
    // every schema is a JSON Schema (the 2020-12 dialect OpenAPI 3.1 builds on).
    let mut targets = Vec::new();
    refs(&doc, &mut targets);
    assert!(targets.len() > 50, "{targets:?}");
    for target in targets {
        let pointer = target.strip_prefix('#').expect("a local reference");
        assert!(
            doc.pointer(pointer).is_some(),
            "{target} resolves to nothing"
        );
    }
    let mut ids = BTreeSet::new();
    for (method, path) in operations(&doc) {
        let id = operation(&doc, &method, &path)["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
        assert!(ids.insert(id.to_string()), "operationId {id} twice");
    }
    for (name, schema) in doc["components"]["schemas"].as_object().expect("schemas") {
        let mut schema = schema.clone();
        schema["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
        if let Err(e) = jsonschema::meta::validate(&schema) {
            panic!("components/schemas/{name} is no JSON Schema: {e}");
        }
    }
    let scheme = &doc["components"]["securitySchemes"]["admin_token"];
    assert_eq!(
        (&scheme["type"], &scheme["scheme"]),
        (&json!("http"), &json!("bearer"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_names_exactly_the_routes_served() {
    let Some(sluice) = Sluice::start(Backend::Sqlite).await else {
        return;
    };
    let doc = document(&sluice).await;
    let documented = operations(&doc);
    // The routes every Sluice serves, whatever else is added later.
    for (method, path) in [
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("GET", "/v1/openapi.json"),
        ("POST", "/webhooks/{installation_id}"),
        ("POST", "/webhooks/drivers/{driver_id}"),
        ("GET", "/oauth/{installation_id}/start"),
        ("GET", "/oauth/callback"),
        ("GET", "/v1/drivers"),
        ("POST", "/v1/installations"),
    ] {
        assert!(
            documented.contains(&(method.to_string(), path.to_string())),
            "{method} {path} is not in the document"
        );
    }
    // The probe tells a route from no route: the fallback answers this.
    let none = call(&sluice, "GET", "/v1/no-such-thing", true, None).await;
    assert_eq!(
        (none.status, none.json["error"]["message"].as_str()),
        (404, Some(NO_ROUTE))
    );

    let paths: BTreeSet<&String> = documented.iter().map(|(_, p)| p).collect();
    for template in paths {
        let path = concrete(template);
        for method in METHODS {
            let key = (method.to_string(), template.clone());
            let resp = call(&sluice, method, &path, true, None).await;
            if !documented.contains(&key) {
                // A method the document does not name for a path it does: refused.
                assert_eq!(resp.status, 405, "{method} {path}: {}", resp.text);
                continue;
            }
            assert_ne!(resp.status, 405, "{method} {path}: {}", resp.text);
            assert_ne!(
                resp.json["error"]["message"].as_str(),
                Some(NO_ROUTE),
                "{method} {path} is documented but not served"
            );
            // Without the token: refused exactly where the document says the token is needed.
            let secured =
                operation(&doc, method, template)["security"] == json!([{"admin_token": []}]);
            let anonymous = call(&sluice, method, &path, false, None).await;
            let refused = anonymous.status == 401
                && anonymous.json["error"]["message"].as_str() == Some(NO_TOKEN);
            assert_eq!(
                refused, secured,
                "{method} {path} without a token: {} {}",
                anonymous.status, anonymous.text
            );
        }
    }
}

/// The routes `docs/admin-api.md` documents: each `### ` heading names one or more, as
/// `` `METHOD /path?query` `` separated by ` / `.
fn documented_in_markdown(text: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for line in text.lines().filter(|l| l.starts_with("### ")) {
        for part in line[4..].split(" / ") {
            let part = part.trim().trim_matches('`');
            let (method, path) = part
                .split_once(' ')
                .unwrap_or_else(|| panic!("heading {line:?}: {part:?} is not `METHOD /path`"));
            assert!(
                METHODS.contains(&method) && path.starts_with('/'),
                "heading {line:?}: {part:?} is not `METHOD /path`"
            );
            let path = path.split('?').next().unwrap_or(path);
            out.insert((method.to_string(), path.to_string()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_md_documents_the_same_routes() {
    let Some(sluice) = Sluice::start(Backend::Sqlite).await else {
        return;
    };
    let doc = document(&sluice).await;
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/admin-api.md");
    let text = std::fs::read_to_string(path).expect("docs/admin-api.md");
    let markdown = documented_in_markdown(&text);
    let openapi = operations(&doc);
    let only_md: Vec<_> = markdown.difference(&openapi).collect();
    let only_openapi: Vec<_> = openapi.difference(&markdown).collect();
    assert!(
        only_md.is_empty() && only_openapi.is_empty(),
        "only in docs/admin-api.md: {only_md:?}\nonly in the OpenAPI document: {only_openapi:?}"
    );
}

#[test]
fn headings_are_parsed_as_the_docs_write_them() {
    let routes = documented_in_markdown(
        "## Installations\n\
         ### `GET /v1/installations/{id}` / `DELETE /v1/installations/{id}`\n\
         text `POST /v1/not-a-heading`\n\
         ### `GET /v1/events?installation_id=&wait=`\n",
    );
    let expected: BTreeSet<(String, String)> = [
        ("DELETE", "/v1/installations/{id}"),
        ("GET", "/v1/events"),
        ("GET", "/v1/installations/{id}"),
    ]
    .into_iter()
    .map(|(m, p)| (m.to_string(), p.to_string()))
    .collect();
    assert_eq!(routes, expected);
}

/// Asserts that `resp` is one of the answers the document gives for `method template`:
/// its status is listed, its type is the one given, and its body validates against that
/// answer's schema.
fn conforms(doc: &Value, method: &str, template: &str, resp: &Answer) {
    let errors = violations(doc, method, template, resp);
    assert!(
        errors.is_empty(),
        "{method} {template} {} does not match the document: {errors:#?}\n{}",
        resp.status,
        resp.text
    );
}

/// How `resp` departs from what the document says `method template` answers.
fn violations(doc: &Value, method: &str, template: &str, resp: &Answer) -> Vec<String> {
    let op = operation(doc, method, template);
    let status = resp.status.to_string();
    let mut response = op["responses"][&status].clone();
    if !response.is_object() {
        return vec![format!("the document lists no {status}")];
    }
    let mut pointer = format!(
        "/paths/{}/{}/responses/{status}",
        template.replace('~', "~0").replace('/', "~1"),
        method.to_lowercase()
    );
    if let Some(target) = response["$ref"].as_str() {
        pointer = target.trim_start_matches('#').to_string();
        response = doc.pointer(&pointer).expect("the $ref resolves").clone();
    }
    let Some(content) = response["content"].as_object() else {
        return match resp.text.is_empty() {
            true => vec![],
            false => vec!["a body where the document gives none".to_string()],
        };
    };
    let (media, _) = content.iter().next().expect("a media type");
    if !resp.content_type.starts_with(media.as_str()) {
        return vec![format!("type {} is not {media}", resp.content_type)];
    }
    if media != "application/json" {
        return vec![];
    }
    let mut schema = doc.clone();
    schema["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
    // A JSON pointer in a URI fragment: `{` and `}` are percent-encoded there.
    let fragment = pointer.replace('{', "%7B").replace('}', "%7D");
    schema["$ref"] = json!(format!("#{fragment}/content/application~1json/schema"));
    let validator = jsonschema::validator_for(&schema).expect("the answer's schema compiles");
    validator
        .iter_errors(&resp.json)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_match_their_schemas() {
    let Some(sluice) = Sluice::start(Backend::Sqlite).await else {
        return;
    };
    let doc = document(&sluice).await;
    let admin = |method: &'static str, path: String, body: Option<Value>| {
        let sluice = &sluice;
        async move { call(sluice, method, &path, true, body).await }
    };
    let check = |method: &str, template: &str, resp: &Answer, status: u16| {
        assert_eq!(resp.status, status, "{method} {template}: {}", resp.text);
        conforms(&doc, method, template, resp);
    };

    for (path, status) in [
        ("/healthz", 200),
        ("/readyz", 200),
        ("/v1/openapi.json", 200),
    ] {
        check(
            "GET",
            path,
            &call(&sluice, "GET", path, false, None).await,
            status,
        );
    }
    check(
        "GET",
        "/metrics",
        &admin("GET", "/metrics".into(), None).await,
        200,
    );
    check(
        "GET",
        "/v1/drivers",
        &admin("GET", "/v1/drivers".into(), None).await,
        200,
    );
    check(
        "GET",
        "/v1/drivers",
        &call(&sluice, "GET", "/v1/drivers", false, None).await,
        401,
    );
    check(
        "GET",
        "/v1/sinks",
        &admin("GET", "/v1/sinks".into(), None).await,
        200,
    );

    let stripe = admin("GET", "/v1/drivers/stripe".into(), None).await;
    check("GET", "/v1/drivers/{id}", &stripe, 200);
    let sha = stripe.json["versions"][0]["sha256"]
        .as_str()
        .expect("a kept version")
        .to_string();
    let version = admin("GET", format!("/v1/drivers/stripe/versions/{sha}"), None).await;
    check("GET", "/v1/drivers/{id}/versions/{sha256}", &version, 200);
    let choice = json!({ "sha256": sha });
    let activated = admin("POST", "/v1/drivers/stripe/activate".into(), Some(choice)).await;
    check("POST", "/v1/drivers/{id}/activate", &activated, 200);
    let nobody = admin("GET", "/v1/drivers/nobody".into(), None).await;
    check("GET", "/v1/drivers/{id}", &nobody, 404);

    // An installation, its secrets and its audit.
    let bad = json!({"driver_id": "stripe", "settings": {"tolerance_seconds": 0}});
    let resp = admin("POST", "/v1/installations".into(), Some(bad)).await;
    check("POST", "/v1/installations", &resp, 422);
    assert_eq!(resp.json["error"]["code"], "invalid_settings");
    assert!(
        resp.json["error"]["details"][0]["path"].is_string(),
        "{}",
        resp.text
    );
    let body = json!({"driver_id": "stripe"});
    let resp = admin("POST", "/v1/installations".into(), Some(body)).await;
    check("POST", "/v1/installations", &resp, 201);
    let id = resp.json["installation_id"].as_str().unwrap().to_string();
    let inst = format!("/v1/installations/{id}");
    let secret = format!("whsec_{}", sluice_testkit::random_hex());
    sluice.remember_secret(&secret);
    let put = admin(
        "PUT",
        format!("{inst}/secrets/webhook_secret"),
        Some(json!({"value": "whsec_first_value"})),
    )
    .await;
    check("PUT", "/v1/installations/{id}/secrets/{name}", &put, 204);
    let rotation = json!({"value": secret, "grace_seconds": 60});
    let rotated = admin(
        "POST",
        format!("{inst}/secrets/webhook_secret/rotate"),
        Some(rotation),
    )
    .await;
    check(
        "POST",
        "/v1/installations/{id}/secrets/{name}/rotate",
        &rotated,
        200,
    );
    let shown = admin("GET", inst.clone(), None).await;
    check("GET", "/v1/installations/{id}", &shown, 200);
    // The schema is exact: a field more, a field less or a wrong type is caught.
    for (field, value) in [
        ("surprise", Some(json!(1))),
        ("auth", None),
        ("account_key", Some(json!(5))),
    ] {
        let mut json = shown.json.clone();
        match value {
            Some(value) => json[field] = value,
            None => drop(json.as_object_mut().unwrap().remove(field)),
        }
        let altered = Answer {
            json,
            ..shown.clone()
        };
        let errors = violations(&doc, "GET", "/v1/installations/{id}", &altered);
        assert_eq!(errors.len(), 1, "{field}: {errors:?}");
    }
    check(
        "GET",
        "/v1/installations",
        &admin("GET", "/v1/installations".into(), None).await,
        200,
    );
    check(
        "GET",
        "/v1/installations/{id}/audit",
        &admin("GET", format!("{inst}/audit"), None).await,
        200,
    );
    let follow = json!({ "sha256": null });
    let pinned = admin("PUT", format!("{inst}/driver-version"), Some(follow)).await;
    check("PUT", "/v1/installations/{id}/driver-version", &pinned, 200);
    let paused = admin("POST", format!("{inst}/pause"), None).await;
    check("POST", "/v1/installations/{id}/pause", &paused, 409);
    assert_eq!(paused.json["error"]["code"], "not_polled");
    check(
        "GET",
        "/v1/installations/{id}",
        &admin("GET", "/v1/installations/nobody".into(), None).await,
        404,
    );

    // An endpoint (disabled: nothing is sent anywhere) before the events it would take.
    let endpoint = json!({"url": "https://engine.example.com/sluice", "disabled": true, "event_types": ["payment.succeeded"]});
    let created = admin("POST", "/v1/endpoints".into(), Some(endpoint)).await;
    check("POST", "/v1/endpoints", &created, 201);
    assert!(
        created.json["secret"]
            .as_str()
            .unwrap()
            .starts_with("whsec_"),
        "{}",
        created.text
    );
    let ep = format!("/v1/endpoints/{}", created.json["id"].as_str().unwrap());

    // A delivery, its events.
    let payload = stripe_charge_payload();
    let signature = stripe_header(&payload, &secret, sluice_testkit::unix_now());
    let webhook = reqwest::Client::new()
        .post(sluice.url(&format!("/webhooks/{id}")))
        .header("content-type", "application/json")
        .header("stripe-signature", signature)
        .body(payload);
    check(
        "POST",
        "/webhooks/{installation_id}",
        &answer(webhook).await,
        200,
    );
    let nobody = call(
        &sluice,
        "POST",
        "/webhooks/inst_nobody",
        false,
        Some(json!({})),
    )
    .await;
    check("POST", "/webhooks/{installation_id}", &nobody, 401);
    let events = admin("GET", format!("/v1/events?installation_id={id}"), None).await;
    check("GET", "/v1/events", &events, 200);
    assert_eq!(
        events.json["events"].as_array().map(Vec::len),
        Some(1),
        "{}",
        events.text
    );
    let bad_wait = admin("GET", "/v1/events?wait=31".into(), None).await;
    check("GET", "/v1/events", &bad_wait, 400);

    check(
        "GET",
        "/v1/endpoints",
        &admin("GET", "/v1/endpoints".into(), None).await,
        200,
    );
    check(
        "GET",
        "/v1/endpoints/{id}",
        &admin("GET", ep.clone(), None).await,
        200,
    );
    let rotate = json!({"rotate_secret": {"grace_seconds": 0}, "description": "the engine"});
    let patched = admin("PATCH", ep.clone(), Some(rotate)).await;
    check("PATCH", "/v1/endpoints/{id}", &patched, 200);
    assert!(patched.json["secret"].is_string(), "{}", patched.text);
    check(
        "GET",
        "/v1/endpoints/{id}/attempts",
        &admin("GET", format!("{ep}/attempts"), None).await,
        200,
    );
    check(
        "GET",
        "/v1/endpoints/{id}/deliveries",
        &admin("GET", format!("{ep}/deliveries?status=pending"), None).await,
        200,
    );
    let since = json!({"since": "2020-01-01T00:00:00Z"});
    check(
        "POST",
        "/v1/endpoints/{id}/replay",
        &admin("POST", format!("{ep}/replay"), Some(since)).await,
        200,
    );
    let one = admin(
        "POST",
        format!("{ep}/deliveries/evt_00000000000000000000000000/replay"),
        None,
    )
    .await;
    check(
        "POST",
        "/v1/endpoints/{id}/deliveries/{event_id}/replay",
        &one,
        404,
    );
    check(
        "DELETE",
        "/v1/endpoints/{id}",
        &admin("DELETE", ep.clone(), None).await,
        204,
    );

    // A dead letter: the faulty driver fails to normalize.
    let faulty = json!({"driver_id": "faulty", "settings": {"mode": "normalize-error"}});
    let resp = admin("POST", "/v1/installations".into(), Some(faulty)).await;
    check("POST", "/v1/installations", &resp, 201);
    let faulty_id = resp.json["installation_id"].as_str().unwrap().to_string();
    let delivered = sluice
        .post_webhook(&faulty_id, &[], br#"{"id":"evt_openapi_1"}"#.to_vec())
        .await;
    delivered.expect_status(200);
    let letters = admin(
        "GET",
        format!("/v1/dead-letters?installation_id={faulty_id}"),
        None,
    )
    .await;
    check("GET", "/v1/dead-letters", &letters, 200);
    let raw_id = letters.json["dead_letters"][0]["raw_event_id"]
        .as_i64()
        .expect("a dead letter");
    let replayed = admin("POST", format!("/v1/raw-events/{raw_id}/replay"), None).await;
    check("POST", "/v1/raw-events/{id}/replay", &replayed, 200);
    let all = admin(
        "POST",
        format!("/v1/installations/{faulty_id}/dead-letters/replay"),
        None,
    )
    .await;
    check(
        "POST",
        "/v1/installations/{id}/dead-letters/replay",
        &all,
        200,
    );

    let callback = call(
        &sluice,
        "GET",
        "/oauth/callback?state=never-issued&code=x",
        false,
        None,
    )
    .await;
    check("GET", "/oauth/callback", &callback, 400);
    check(
        "DELETE",
        "/v1/installations/{id}",
        &admin("DELETE", inst, None).await,
        204,
    );
}
