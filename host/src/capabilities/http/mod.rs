//! The `http` capability: outbound requests, allowed only to origins the driver declared
//! or the operator granted, with credentials injected from named secrets.
//!
//! Where a request may go is the network policy's to say ([`crate::net`]): a declared
//! origin is reached only at global addresses (as a literal and after DNS); an origin the
//! operator granted (`allow_hosts`) may resolve anywhere, and only requests to exactly that
//! origin go through the client that allows it. Redirects are not followed, so a provider
//! cannot bounce a request past the grants, and proxies from the environment are ignored.

mod jwks;
pub mod request;

use std::collections::HashMap;
use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker};

use super::credentials::SecretBinding;
use super::recorded::RecordedHttp;
use super::secrets::SecretValue;
use super::{CallScope, CallState, Capability, CapabilityConfig, DriverContext, NoConfig};
use crate::net::{self, GlobalOnlyResolver, OriginPattern};
use crate::wit::http::{Body, Capture, Credential, Error, Host, Request, Response, Value};

/// Replaces captured values in the body handed back to the guest.
const REDACTED: &str = "[redacted]";

/// Process-wide HTTP state: the connection pools and the operator's grants.
pub struct Http {
    /// Carries requests to declared origins: global addresses only.
    public: reqwest::Client,
    /// Carries requests to operator-granted origins: may resolve to private addresses.
    granted: reqwest::Client,
    grants: Arc<[OriginPattern]>,
    max_response: usize,
    key_sets: Arc<jwks::KeySetCache>,
}

impl Http {
    /// The operator's development grants (`allow_hosts`).
    pub fn grants(&self) -> &[OriginPattern] {
        &self.grants
    }
}

fn client(resolver: GlobalOnlyResolver) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(Arc::new(resolver))
        .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Where one driver's requests may go and where each of its secrets may be sent.
#[derive(Debug, Default)]
pub struct HttpDriver {
    /// Origins its calls may reach: declared and granted by the policy (the development
    /// grant is checked apart).
    pub origins: Vec<OriginPattern>,
    /// Origins it declared that the policy does not grant.
    pub disabled_origins: Vec<OriginPattern>,
    /// Where each declared secret may be sent.
    pub bindings: HashMap<String, SecretBinding>,
}

impl HttpDriver {
    /// Whether the driver's own grant covers `url` (declared and granted).
    pub fn reaches(&self, url: &url::Url) -> bool {
        self.origins.iter().any(|o| o.matches(url))
    }
}

impl Capability for Http {
    const INTERFACE: &'static str = "http";
    const FUNCTIONS: &'static [&'static str] = &["send"];
    type Config = NoConfig;
    type Driver = HttpDriver;
    type Call = CallHttp;

    fn new(_: &NoConfig, config: &CapabilityConfig) -> anyhow::Result<Self> {
        let grants: Arc<[OriginPattern]> = config.grants.clone().into();
        Ok(Self {
            public: client(GlobalOnlyResolver::strict())?,
            granted: client(GlobalOnlyResolver::trusting(grants.clone()))?,
            grants,
            max_response: config.limits.max_response_bytes,
            key_sets: Arc::default(),
        })
    }

    fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
        crate::wit::http::add_to_linker::<_, HasSelf<CallState>>(linker, |s| s)
    }

    fn enter_export(call: &mut CallHttp, settings: &str) {
        if call.settings_text != settings {
            call.settings_text = settings.to_string();
            call.settings = None;
        }
    }

    fn driver(&self, driver: &DriverContext<'_>) -> Result<HttpDriver, String> {
        let info = driver.info;
        let properties: Vec<&str> = info.settings_schema["properties"]
            .as_object()
            .map(|p| p.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let bindings = info
            .secrets
            .iter()
            .map(|s| {
                SecretBinding::parse(&s.name, &s.sent_to, s.header.as_deref(), &properties)
                    .map(|b| (s.name.clone(), b))
            })
            .collect::<Result<_, _>>()?;
        Ok(HttpDriver {
            origins: driver.origins.effective.clone(),
            disabled_origins: driver.origins.disabled.clone(),
            bindings,
        })
    }

    fn start_call(&self, driver: &Arc<HttpDriver>, scope: &CallScope) -> CallHttp {
        CallHttp {
            public: self.public.clone(),
            granted: self.granted.clone(),
            grants: self.grants.clone(),
            declared: driver.clone(),
            driver_id: scope.driver.id.clone(),
            for_installation: scope.installation.is_some(),
            settings_text: String::new(),
            settings: None,
            remaining: scope.driver.limits.max_outbound_requests,
            max_response: self.max_response,
            key_sets: self.key_sets.clone(),
            recorded: scope.fixed().and_then(|f| f.http.clone()),
        }
    }
}

/// Which client a checked request goes through.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Route {
    Public,
    Granted,
}

/// Per-call HTTP state: the grants in force and the request budget.
pub struct CallHttp {
    public: reqwest::Client,
    granted: reqwest::Client,
    grants: Arc<[OriginPattern]>,
    /// The driver's origins and secret bindings.
    declared: Arc<HttpDriver>,
    /// The driver's id, for the log.
    driver_id: String,
    /// Calls outside an installation (loading the metadata, `route-key` before any
    /// verification) reach nothing.
    for_installation: bool,
    /// The installation's settings, for the secrets' `sent-to` placeholders (parsed when
    /// a credential is first used).
    settings_text: String,
    settings: Option<serde_json::Value>,
    remaining: u32,
    max_response: usize,
    key_sets: Arc<jwks::KeySetCache>,
    /// Recorded answers replacing the network (a fixture run).
    recorded: Option<Arc<RecordedHttp>>,
}

impl CallHttp {
    /// Check a URL against the grants; `Err` is the guest-facing reason.
    pub(crate) fn check(&self, url: &url::Url) -> Result<Route, Error> {
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(Error::InvalidRequest(format!(
                "scheme {:?} is not allowed",
                url.scheme()
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Error::InvalidRequest(
                "credentials in the URL are not allowed; name a secret in `credential`".into(),
            ));
        }
        if !self.for_installation {
            return Err(Error::Denied(
                "no network outside an installation's call (metadata, route-key)".into(),
            ));
        }
        if self.grants.iter().any(|g| g.matches(url)) {
            return Ok(Route::Granted);
        }
        if !self.declared.reaches(url) {
            let origin = url.origin().ascii_serialization();
            let declared = self
                .declared
                .disabled_origins
                .iter()
                .any(|g| g.matches(url));
            // The operator's policy is about the network, which a replay never reaches:
            // there, every origin the driver declared may be answered.
            if declared && self.recorded.is_some() {
                return Ok(Route::Public);
            }
            return Err(Error::Denied(if declared {
                format!("{origin} is declared but not granted by the operator's policy")
            } else {
                format!("{origin} is not a granted origin")
            }));
        }
        if net::is_non_global_literal(url) {
            return Err(Error::Denied(format!(
                "{} is not a public address",
                net::host_of(url)
            )));
        }
        Ok(Route::Public)
    }

    /// Whether secret `name` may be sent to `url` (its declared `sent-to`).
    fn may_send(&mut self, name: &str, url: &url::Url) -> Result<(), Error> {
        let settings = self.settings.get_or_insert_with(|| {
            serde_json::from_str(&self.settings_text).unwrap_or(serde_json::Value::Null)
        });
        match self.declared.bindings.get(name) {
            Some(binding) if binding.allows(url, settings) => Ok(()),
            // Undeclared: the secrets capability answers that when it is looked up.
            None => Ok(()),
            Some(_) => Err(Error::Denied(format!(
                "secret {name:?} may not be sent to {} (not in its sent-to)",
                url.origin().ascii_serialization()
            ))),
        }
    }

    /// Whether `captures` may be taken from `url`'s answer: each into a declared secret that
    /// may be sent to `url`.
    fn may_capture(&mut self, captures: &[Capture], url: &url::Url) -> Result<(), Error> {
        for c in captures {
            let settings = self.settings.get_or_insert_with(|| {
                serde_json::from_str(&self.settings_text).unwrap_or(serde_json::Value::Null)
            });
            match self.declared.bindings.get(&c.secret) {
                None => {
                    return Err(Error::InvalidRequest(format!(
                        "capture into undeclared secret {:?}",
                        c.secret
                    )));
                }
                Some(binding) if !binding.allows(url, settings) => {
                    return Err(Error::Denied(format!(
                        "a capture into secret {:?} is taken only from an origin it may be sent to, not {}",
                        c.secret,
                        url.origin().ascii_serialization()
                    )));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    pub(crate) fn client(&self, route: Route) -> reqwest::Client {
        match route {
            Route::Public => self.public.clone(),
            Route::Granted => self.granted.clone(),
        }
    }

    /// Take one request from the call's outbound budget; `false` when it is spent.
    pub(crate) fn spend_request(&mut self) -> bool {
        let Some(left) = self.remaining.checked_sub(1) else {
            return false;
        };
        self.remaining = left;
        true
    }

    /// The process-wide cache of JSON Web Key Sets.
    pub(crate) fn key_sets(&self) -> &jwks::KeySetCache {
        &self.key_sets
    }

    /// The recorded answers this call is served from instead of the network.
    pub(crate) fn recorded(&self) -> Option<&Arc<RecordedHttp>> {
        self.recorded.as_ref()
    }
}

/// What an answer carried: status, headers, body.
type Answer = (u16, Vec<(String, String)>, Vec<u8>);

/// Send `outgoing` and read the answer, at most `max_response` bytes of body.
async fn fetch(
    client: &reqwest::Client,
    outgoing: reqwest::Request,
    max_response: usize,
) -> Result<Answer, Error> {
    let mut response = match client.execute(outgoing).await {
        Ok(r) => r,
        Err(e) if e.is_timeout() => return Err(Error::Timeout),
        Err(e) => return Err(Error::Transport(format!("{e:#}"))),
    };
    let status = response.status().as_u16();
    let headers = request::response_headers(response.headers())?;
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > max_response {
                    return Err(Error::LimitExceeded(format!(
                        "response body over {max_response} bytes"
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) if e.is_timeout() => return Err(Error::Timeout),
            Err(e) => return Err(Error::Transport(format!("{e:#}"))),
        }
    }
    Ok((status, headers, body))
}

/// The recorded answer to `outgoing` (built like a real request, so its credentials were
/// resolved and checked), under the same body limit.
fn replay(
    recorded: &RecordedHttp,
    outgoing: &reqwest::Request,
    max_response: usize,
) -> Result<Answer, Error> {
    let Some(answer) = recorded.answer(outgoing.method().as_str(), outgoing.url()) else {
        return Err(Error::Transport(format!(
            "no recorded response for {} {}",
            outgoing.method(),
            outgoing.url()
        )));
    };
    if answer.body.len() > max_response {
        return Err(Error::LimitExceeded(format!(
            "response body over {max_response} bytes"
        )));
    }
    Ok((answer.status, answer.headers, answer.body))
}

impl CallState {
    /// The value of secret `name` for a request; `Err` is the guest-facing reason.
    async fn secret_text(&mut self, name: &str) -> wasmtime::Result<Result<SecretValue, Error>> {
        use crate::wit::secrets::Error as SecretError;
        Ok(self.caps.secrets.lookup(name).await?.map_err(|e| match e {
            SecretError::NotFound(name) => {
                Error::MissingCredential(format!("the installation has no {name:?} secret"))
            }
            // Naming a secret it never declared is the driver's bug, not a setup problem.
            SecretError::NotDeclared(name) => {
                Error::InvalidRequest(format!("the driver did not declare a {name:?} secret"))
            }
            SecretError::Invalid(m) => Error::InvalidRequest(m),
        }))
    }

    /// Build the outgoing request: each secret it names checked against where it may go
    /// and how (`request::secret_uses`), resolved, and injected (`request::assemble`).
    async fn build(
        &mut self,
        client: &reqwest::Client,
        url: url::Url,
        request: Request,
    ) -> wasmtime::Result<Result<reqwest::Request, Error>> {
        let uses = match request::secret_uses(&request, &self.caps.http.declared.bindings) {
            Ok(uses) => uses,
            Err(e) => return Ok(Err(e)),
        };
        let mut resolved = HashMap::new();
        for (name, _) in uses {
            if resolved.contains_key(&name) {
                continue;
            }
            if let Err(e) = self.caps.http.may_send(&name, &url) {
                return Ok(Err(e));
            }
            match self.secret_text(&name).await? {
                Ok(value) => {
                    resolved.insert(name, value);
                }
                Err(e) => return Ok(Err(e)),
            }
        }
        Ok(request::assemble(client, url, request, &resolved))
    }

    /// Store captured JSON fields as secrets and redact them from the body.
    fn apply_captures(
        &mut self,
        body: Vec<u8>,
        captures: &[crate::wit::http::Capture],
    ) -> Result<Vec<u8>, Error> {
        if captures.is_empty() {
            return Ok(body);
        }
        for c in captures {
            if !self.caps.secrets.is_declared(&c.secret) {
                return Err(Error::InvalidRequest(format!(
                    "capture into undeclared secret {:?}",
                    c.secret
                )));
            }
        }
        let Ok(mut json) = serde_json::from_slice::<serde_json::Value>(&body) else {
            return Ok(body); // not JSON (an error page): nothing to capture
        };
        for c in captures {
            if let Some(field) = json.pointer_mut(&c.pointer) {
                let value = match &mut *field {
                    serde_json::Value::String(s) => std::mem::take(s),
                    other => other.to_string(),
                };
                self.caps
                    .secrets
                    .capture(c.secret.clone(), SecretValue::new(value.into_bytes()));
                *field = serde_json::Value::String(REDACTED.into());
            }
        }
        serde_json::to_vec(&json).map_err(|e| Error::Transport(e.to_string()))
    }
}

impl Host for CallState {
    async fn send(&mut self, request: Request) -> wasmtime::Result<Result<Response, Error>> {
        let url = match url::Url::parse(&request.url) {
            Ok(url) => url,
            Err(e) => return Ok(Err(Error::InvalidRequest(format!("bad URL: {e}")))),
        };
        let route = match self.caps.http.check(&url) {
            Ok(route) => route,
            Err(e) => return Ok(Err(e)),
        };
        if self.caps.http.remaining == 0 {
            return Ok(Err(Error::LimitExceeded(
                "outbound request budget for this call is spent".into(),
            )));
        }
        // A capture overwrites a secret with what a response says, so it is taken only from
        // an origin that secret may be sent to, answering a request that authenticated with
        // one of the installation's own credentials — which `build` sends only to origins
        // they are bound to. No other reachable origin can plant a token, and no answer
        // moves a value from one origin's secret to another's.
        if let Err(e) = self.caps.http.may_capture(&request.capture, &url) {
            return Ok(Err(e));
        }
        let secret = |v: &Value| matches!(v, Value::Secret(_));
        let authenticated = match &request.credential {
            Some(Credential::Bearer(_) | Credential::Header(_)) => true,
            Some(Credential::Basic(b)) => secret(&b.username) || secret(&b.password),
            None => false,
        } || matches!(&request.body, Body::Form(fields) if fields.iter().any(|(_, v)| secret(v)));
        if !request.capture.is_empty() && !authenticated {
            return Ok(Err(Error::Denied(
                "captures are only taken from a request that carries one of the installation's credentials"
                    .into(),
            )));
        }
        let captures = request.capture.clone();
        // Origin and path only: a query may carry what the driver put there.
        let target = format!("{}{}", url.origin().ascii_serialization(), url.path());
        let method = format!("{:?}", request.method);
        let client = self.caps.http.client(route);
        let outgoing = match self.build(&client, url, request).await? {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        // Only requests that leave the host (or would, in a replay) count against the
        // budget.
        self.caps.http.remaining -= 1;
        let max_response = self.caps.http.max_response;
        let answer = match self.caps.http.recorded() {
            Some(recorded) => replay(recorded, &outgoing, max_response),
            None => fetch(&client, outgoing, max_response).await,
        };
        let (status, headers, body) = match answer {
            Ok(answer) => answer,
            Err(e) => return Ok(Err(e)),
        };
        tracing::debug!(driver = %self.caps.http.driver_id, %method, %target, status, "outbound request");
        // Tokens come from a successful answer only; an error page plants nothing.
        let body = if (200..300).contains(&status) {
            match self.apply_captures(body, &captures) {
                Ok(body) => body,
                Err(e) => return Ok(Err(e)),
            }
        } else {
            body
        };
        if let Err(e) = self.caps.secrets.store_captured().await {
            tracing::error!(driver = %self.caps.http.driver_id, error = %e, "could not store captured secrets");
            return Ok(Err(Error::Transport(format!(
                "the host could not store the captured credentials: {e}"
            ))));
        }
        Ok(Ok(Response {
            status,
            headers,
            body,
        }))
    }
}
