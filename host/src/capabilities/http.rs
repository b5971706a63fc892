//! The `http` capability: outbound requests, allowed only to origins the driver declared
//! or the operator granted, with credentials injected from named secrets.
//!
//! Private, loopback and link-local destinations are refused — as literal addresses and
//! after DNS resolution — unless an operator grant names them (`SLUICE_ALLOW_HOSTS`).
//! Redirects are not followed, so a provider cannot bounce a request past the grants.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::secrets::SecretValue;
use super::{CallScope, CallState, Capabilities};
use crate::runtime::http::{Body, Credential, Error, Host, Method, Request, Response, Value};

/// Longest a single outbound request may take, whatever the driver asks.
const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Prefix of the `invalid-request` message for a credential naming an unusable secret
/// (drivers, through the SDK, report it as an installation-settings problem).
const CREDENTIAL_SECRET: &str = "credential secret";
/// Replaces captured values in the body handed back to the guest.
const REDACTED: &str = "[redacted]";

/// An origin pattern: `scheme://host[:port]`, where host may start with `*.` and port
/// may be `*`. Without a port, the scheme's default port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    scheme: String,
    host: String,
    port: Option<u16>,
}

impl HostPattern {
    pub fn parse(pattern: &str) -> Result<Self, String> {
        let (scheme, rest) = pattern
            .split_once("://")
            .ok_or_else(|| format!("{pattern:?} needs a scheme, e.g. https://api.example.com"))?;
        if scheme != "http" && scheme != "https" {
            return Err(format!("{pattern:?}: only http and https are supported"));
        }
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') || rest.is_empty() {
            return Err(format!("{pattern:?}: give an origin, without a path"));
        }
        let (host, port) = match rest.strip_prefix('[') {
            Some(v6) => {
                let (host, after) = v6
                    .split_once(']')
                    .ok_or_else(|| format!("{pattern:?}: unclosed `[`"))?;
                match after {
                    "" => (host, None),
                    _ => (
                        host,
                        Some(
                            after
                                .strip_prefix(':')
                                .ok_or_else(|| format!("{pattern:?}: bad port"))?,
                        ),
                    ),
                }
            }
            None => match rest.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            },
        };
        let port = match port {
            None => Some(default_port(scheme)),
            Some("*") => None,
            Some(p) => Some(
                p.parse()
                    .map_err(|_| format!("{pattern:?}: bad port {p:?}"))?,
            ),
        };
        let host = host.to_ascii_lowercase();
        if host.is_empty()
            || (host.contains('*') && !(host.starts_with("*.") && host[2..].find('*').is_none()))
        {
            return Err(format!(
                "{pattern:?}: a wildcard may only be a leading `*.`"
            ));
        }
        Ok(Self {
            scheme: scheme.to_string(),
            host,
            port,
        })
    }

    /// Whether the pattern's host part matches `host` (any port).
    fn matches_host(&self, host: &str) -> bool {
        match self.host.strip_prefix("*.") {
            Some(suffix) => host.len() > suffix.len() + 1 && host.ends_with(&format!(".{suffix}")),
            None => self.host == host,
        }
    }

    fn matches(&self, url: &url::Url) -> bool {
        let host = host_of(url);
        self.scheme == url.scheme()
            && self.matches_host(&host)
            && self
                .port
                .is_none_or(|p| Some(p) == url.port_or_known_default())
    }
}

fn default_port(scheme: &str) -> u16 {
    if scheme == "https" { 443 } else { 80 }
}

/// The URL's host, lower-case, without IPv6 brackets.
fn host_of(url: &url::Url) -> String {
    match url.host() {
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        Some(host) => host.to_string().to_ascii_lowercase(),
        None => String::new(),
    }
}

/// Whether an address is only reachable inside a network (refused by default).
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64 // CGNAT 100.64/10
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00 // unique local
                || (v6.segments()[0] & 0xffc0) == 0xfe80 // link local
        }
    }
}

/// Process-wide HTTP state: one connection pool, the operator's grants.
pub struct HttpCapability {
    client: reqwest::Client,
    operator_grants: Arc<[HostPattern]>,
}

impl HttpCapability {
    pub fn new(operator_grants: Vec<HostPattern>) -> anyhow::Result<Self> {
        let operator_grants: Arc<[HostPattern]> = operator_grants.into();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(PublicOnlyResolver {
                operator_grants: operator_grants.clone(),
            }))
            .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            operator_grants,
        })
    }

    fn granted_by_operator(&self, url: &url::Url) -> bool {
        self.operator_grants.iter().any(|g| g.matches(url))
    }
}

/// Resolves names, dropping private addresses unless an operator grant names the host.
struct PublicOnlyResolver {
    operator_grants: Arc<[HostPattern]>,
}

impl Resolve for PublicOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_ascii_lowercase();
        let trusted = self.operator_grants.iter().any(|g| g.matches_host(&host));
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| trusted || !is_private(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(format!("{host} resolves only to private addresses").into());
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Per-call HTTP state: the grants in force and the request budget.
pub struct CallHttp {
    shared: Arc<Capabilities>,
    declared: Arc<[HostPattern]>,
    remaining: u32,
    max_response: usize,
}

impl CallHttp {
    pub fn new(
        shared: Arc<Capabilities>,
        scope: &CallScope,
        max_requests: u32,
        max_response: usize,
    ) -> Self {
        Self {
            shared,
            declared: scope.declared_hosts.clone(),
            remaining: max_requests,
            max_response,
        }
    }

    /// Check a URL against the grants; `Err` is the guest-facing reason.
    fn check(&self, url: &url::Url) -> Result<(), Error> {
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(Error::InvalidRequest(format!(
                "scheme {:?} is not allowed",
                url.scheme()
            )));
        }
        let http = &self.shared.http;
        if http.granted_by_operator(url) {
            return Ok(());
        }
        if !self.declared.iter().any(|g| g.matches(url)) {
            return Err(Error::Denied(format!(
                "{} is not a granted origin",
                url.origin().ascii_serialization()
            )));
        }
        let private_literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => is_private(ip.into()),
            Some(url::Host::Ipv6(ip)) => is_private(ip.into()),
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            None => true,
        };
        if private_literal {
            return Err(Error::Denied(format!(
                "{} is a private address",
                host_of(url)
            )));
        }
        Ok(())
    }
}

impl CallState {
    async fn secret_text(&mut self, name: &str) -> wasmtime::Result<Result<SecretValue, Error>> {
        Ok(self
            .secrets
            .lookup(name)
            .await?
            .map_err(|e| Error::InvalidRequest(format!("{CREDENTIAL_SECRET}: {e:?}"))))
    }

    async fn resolve_value(&mut self, value: Value) -> wasmtime::Result<Result<Vec<u8>, Error>> {
        Ok(match value {
            Value::Text(text) => Ok(text.into_bytes()),
            Value::Secret(name) => self.secret_text(&name).await?.map(|s| s.expose().to_vec()),
        })
    }

    /// Build the outgoing request, resolving secret references.
    async fn build(
        &mut self,
        url: url::Url,
        request: Request,
    ) -> wasmtime::Result<Result<reqwest::Request, Error>> {
        let client = self.http.shared.http.client.clone();
        let method = match request.method {
            Method::Get => reqwest::Method::GET,
            Method::Head => reqwest::Method::HEAD,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Patch => reqwest::Method::PATCH,
            Method::Delete => reqwest::Method::DELETE,
        };
        let timeout = request
            .timeout_ms
            .map(|ms| Duration::from_millis(ms.into()))
            .unwrap_or(MAX_REQUEST_TIMEOUT)
            .min(MAX_REQUEST_TIMEOUT);
        let mut builder = client.request(method, url).timeout(timeout);
        for (name, value) in request.headers {
            builder = builder.header(name, value);
        }
        builder = match request.body {
            Body::Empty => builder,
            Body::Bytes(bytes) => builder.body(bytes),
            Body::Form(fields) => {
                let mut resolved = Vec::with_capacity(fields.len());
                for (name, value) in fields {
                    match self.resolve_value(value).await? {
                        Ok(v) => resolved.push((name, String::from_utf8_lossy(&v).into_owned())),
                        Err(e) => return Ok(Err(e)),
                    }
                }
                let form = url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(&resolved)
                    .finish();
                builder
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(form)
            }
        };
        let auth_header = match request.credential {
            None => None,
            Some(Credential::Bearer(name)) => match self.secret_text(&name).await? {
                Ok(s) => Some((
                    "authorization".to_string(),
                    [b"Bearer ".as_slice(), s.expose()].concat(),
                )),
                Err(e) => return Ok(Err(e)),
            },
            Some(Credential::Basic(basic)) => {
                let user = match self.resolve_value(basic.username).await? {
                    Ok(v) => v,
                    Err(e) => return Ok(Err(e)),
                };
                let pass = match self.resolve_value(basic.password).await? {
                    Ok(v) => v,
                    Err(e) => return Ok(Err(e)),
                };
                let encoded = STANDARD.encode([user.as_slice(), b":", pass.as_slice()].concat());
                Some((
                    "authorization".to_string(),
                    format!("Basic {encoded}").into_bytes(),
                ))
            }
            Some(Credential::Header(h)) => match self.secret_text(&h.secret).await? {
                Ok(s) => Some((h.name, s.expose().to_vec())),
                Err(e) => return Ok(Err(e)),
            },
        };
        if let Some((name, value)) = auth_header {
            let mut value = match reqwest::header::HeaderValue::from_bytes(&value) {
                Ok(v) => v,
                Err(_) => {
                    return Ok(Err(Error::InvalidRequest(
                        "credential is not a valid header value".into(),
                    )));
                }
            };
            value.set_sensitive(true);
            builder = builder.header(name, value);
        }
        Ok(builder
            .build()
            .map_err(|e| Error::InvalidRequest(e.to_string())))
    }

    /// Store captured JSON fields as secrets and redact them from the body.
    fn apply_captures(
        &mut self,
        body: Vec<u8>,
        captures: &[crate::runtime::http::Capture],
    ) -> Result<Vec<u8>, Error> {
        if captures.is_empty() {
            return Ok(body);
        }
        for c in captures {
            if !self.secrets.is_declared(&c.secret) {
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
                self.secrets
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
        if let Err(e) = self.http.check(&url) {
            return Ok(Err(e));
        }
        if self.http.remaining == 0 {
            return Ok(Err(Error::LimitExceeded(
                "outbound request budget for this call is spent".into(),
            )));
        }
        let captures = request.capture.clone();
        let outgoing = match self.build(url, request).await? {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        // Only requests that leave the host count against the budget.
        self.http.remaining -= 1;
        let client = self.http.shared.http.client.clone();
        let mut response = match client.execute(outgoing).await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => return Ok(Err(Error::Timeout)),
            Err(e) => return Ok(Err(Error::Transport(format!("{e:#}")))),
        };
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > self.http.max_response {
                        return Ok(Err(Error::LimitExceeded(format!(
                            "response body over {} bytes",
                            self.http.max_response
                        ))));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) if e.is_timeout() => return Ok(Err(Error::Timeout)),
                Err(e) => return Ok(Err(Error::Transport(format!("{e:#}")))),
            }
        }
        Ok(self.apply_captures(body, &captures).map(|body| Response {
            status,
            headers,
            body,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> url::Url {
        url::Url::parse(s).unwrap()
    }

    #[test]
    fn patterns_match_scheme_host_and_port() {
        let p = HostPattern::parse("https://api.stripe.com").unwrap();
        assert!(p.matches(&url("https://api.stripe.com/v1/events")));
        assert!(p.matches(&url("https://API.stripe.com:443/")));
        assert!(!p.matches(&url("http://api.stripe.com/")));
        assert!(!p.matches(&url("https://api.stripe.com:8443/")));
        assert!(!p.matches(&url("https://api.stripe.com.evil.test/")));

        let any_port = HostPattern::parse("http://127.0.0.1:*").unwrap();
        assert!(any_port.matches(&url("http://127.0.0.1:3456/x")));
        assert!(!any_port.matches(&url("http://127.0.0.2:3456/x")));

        let wild = HostPattern::parse("https://*.myshopify.com").unwrap();
        assert!(wild.matches(&url("https://shop-1.myshopify.com/admin")));
        assert!(!wild.matches(&url("https://myshopify.com/")));
        assert!(!wild.matches(&url("https://evilmyshopify.com/")));

        let v6 = HostPattern::parse("http://[::1]:8080").unwrap();
        assert!(v6.matches(&url("http://[::1]:8080/")));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in [
            "api.stripe.com",
            "ftp://x",
            "https://a/b",
            "https://a*.b",
            "https://x:port",
            "https://",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn private_ranges_are_private() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "0.0.0.0",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "2606:4700::1111", "100.128.0.1"] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }
}
