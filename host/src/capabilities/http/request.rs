//! A driver's request, turned into the one the host sends: every header checked, every
//! secret it names used only as its binding allows, the credential injected. No
//! guest-built value reaches a panic or the connection's framing.
//!
//! The check is in two steps so that it can be fuzzed without a store: [`secret_uses`]
//! lists the secrets a request names and how (refusing a header-bound secret anywhere but
//! in its header); the caller resolves those it may send to the URL; [`assemble`] builds the
//! request from the resolved values.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::capabilities::credentials::SecretBinding;
use crate::capabilities::secrets::SecretValue;
use crate::wit::http::{Body, Credential, Error, Method, Request, Value};

/// Most headers a driver's request may carry.
pub const MAX_HEADERS: usize = 100;
/// Most bytes of header names and values a request may carry, and a response may hand
/// back to the driver.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Most headers a response may hand back to the driver.
pub const MAX_RESPONSE_HEADERS: usize = 100;
/// Longest a single outbound request may take, whatever the driver asks.
pub const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Headers a driver may not set: the authority a shared front routes by (a credential
/// checked against the URL must not leave under another name) and the connection's own
/// framing, which the host's client writes.
const FORBIDDEN: &[&str] = &[
    "host",
    "connection",
    "transfer-encoding",
    "content-length",
    "te",
    "trailer",
    "upgrade",
    "keep-alive",
];

/// Why `name` may not be set by a driver, if it may not.
fn forbidden(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    if FORBIDDEN.contains(&lower.as_str()) || lower.starts_with("proxy-") {
        Some(if lower == "host" {
            "the authority is the URL's"
        } else {
            "the connection's framing is the host's"
        })
    } else {
        None
    }
}

/// How a request uses a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretUse {
    /// `Authorization: Bearer <secret>`.
    Bearer,
    /// Half of `Authorization: Basic …`.
    Basic,
    /// The value of this header.
    Header(String),
    /// A form field's value.
    Form,
}

/// Every secret `request` names, with how; `Err` when a secret bound to a header of its own
/// is used any other way, or in another header.
pub fn secret_uses(
    request: &Request,
    bindings: &HashMap<String, SecretBinding>,
) -> Result<Vec<(String, SecretUse)>, Error> {
    let mut uses = Vec::new();
    let value = |v: &Value, how: SecretUse, uses: &mut Vec<_>| {
        if let Value::Secret(name) = v {
            uses.push((name.clone(), how));
        }
    };
    match &request.credential {
        None => {}
        Some(Credential::Bearer(name)) => uses.push((name.clone(), SecretUse::Bearer)),
        Some(Credential::Basic(b)) => {
            value(&b.username, SecretUse::Basic, &mut uses);
            value(&b.password, SecretUse::Basic, &mut uses);
        }
        Some(Credential::Header(h)) => {
            uses.push((h.secret.clone(), SecretUse::Header(h.name.clone())));
        }
    }
    if let Body::Form(fields) = &request.body {
        for (_, v) in fields {
            value(v, SecretUse::Form, &mut uses);
        }
    }
    for (name, how) in &uses {
        let Some(binding) = bindings.get(name) else {
            // Undeclared: the secrets capability answers that when it is looked up.
            continue;
        };
        match (binding.header(), how) {
            (Some(declared), SecretUse::Header(used)) if !declared.eq_ignore_ascii_case(used) => {
                return Err(Error::Denied(format!(
                    "secret {name:?} may only be sent in header {declared:?}, not {used:?}"
                )));
            }
            (Some(declared), SecretUse::Bearer | SecretUse::Basic | SecretUse::Form) => {
                return Err(Error::Denied(format!(
                    "secret {name:?} may only be sent in header {declared:?}"
                )));
            }
            (None, SecretUse::Header(used)) => {
                return Err(Error::Denied(format!(
                    "secret {name:?} may not be sent in header {used:?} (it declares no header)"
                )));
            }
            _ => {}
        }
    }
    Ok(uses)
}

/// The driver's headers, checked: at most [`MAX_HEADERS`] and [`MAX_HEADER_BYTES`], valid
/// names and values, none the host keeps for itself.
pub fn headers(headers: &[(String, String)]) -> Result<HeaderMap, Error> {
    if headers.len() > MAX_HEADERS {
        return Err(Error::InvalidRequest(format!(
            "{} headers; a request carries at most {MAX_HEADERS}",
            headers.len()
        )));
    }
    let bytes: usize = headers.iter().map(|(n, v)| n.len() + v.len()).sum();
    if bytes > MAX_HEADER_BYTES {
        return Err(Error::InvalidRequest(format!(
            "{bytes} bytes of headers; a request carries at most {MAX_HEADER_BYTES}"
        )));
    }
    let mut map = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if let Some(why) = forbidden(name) {
            return Err(Error::InvalidRequest(format!(
                "header {:?} may not be set by a driver: {why}",
                crate::text::bounded(name, 64)
            )));
        }
        let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            Error::InvalidRequest(format!(
                "{:?} is not a header name",
                crate::text::bounded(name, 64)
            ))
        })?;
        let value = HeaderValue::from_str(value).map_err(|_| {
            Error::InvalidRequest(format!("the value of header {header} is not a header value"))
        })?;
        map.append(header, value);
    }
    Ok(map)
}

/// Build the request to send from `request` and the values of the secrets it names
/// (`resolved`, checked by the caller against where each may go).
pub fn assemble(
    client: &reqwest::Client,
    url: url::Url,
    request: Request,
    resolved: &HashMap<String, SecretValue>,
) -> Result<reqwest::Request, Error> {
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
    let secret = |name: &str| {
        resolved
            .get(name)
            .map(|v| v.expose().to_vec())
            .ok_or_else(|| Error::MissingCredential(format!("no value for secret {name:?}")))
    };
    let value = |v: Value| match v {
        Value::Text(text) => Ok(text.into_bytes()),
        Value::Secret(name) => secret(&name),
    };
    let mut map = headers(&request.headers)?;
    let body = match request.body {
        Body::Empty => None,
        Body::Bytes(bytes) => Some(bytes),
        Body::Form(fields) => {
            let mut pairs = Vec::with_capacity(fields.len());
            for (name, v) in fields {
                pairs.push((name, String::from_utf8_lossy(&value(v)?).into_owned()));
            }
            map.insert(
                reqwest::header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            );
            Some(
                url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(&pairs)
                    .finish()
                    .into_bytes(),
            )
        }
    };
    let credential = match request.credential {
        None => None,
        Some(Credential::Bearer(name)) => Some((
            reqwest::header::AUTHORIZATION,
            [b"Bearer ".as_slice(), &secret(&name)?].concat(),
        )),
        Some(Credential::Basic(basic)) => {
            let (user, pass) = (value(basic.username)?, value(basic.password)?);
            let encoded = STANDARD.encode([user.as_slice(), b":", pass.as_slice()].concat());
            Some((
                reqwest::header::AUTHORIZATION,
                format!("Basic {encoded}").into_bytes(),
            ))
        }
        Some(Credential::Header(h)) => {
            let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| {
                Error::InvalidRequest("the credential's header is not a header name".into())
            })?;
            if forbidden(name.as_str()).is_some() {
                return Err(Error::InvalidRequest(format!(
                    "a credential may not go in header {name}"
                )));
            }
            Some((name, secret(&h.secret)?))
        }
    };
    if let Some((name, bytes)) = credential {
        let mut value = HeaderValue::from_bytes(&bytes)
            .map_err(|_| Error::InvalidRequest("credential is not a valid header value".into()))?;
        value.set_sensitive(true);
        // The credential is the only value of its header: a driver's own `Authorization`
        // does not travel beside it.
        map.insert(name, value);
    }
    let mut builder = client
        .request(method, url)
        .timeout(timeout)
        .headers(map);
    if let Some(body) = body {
        builder = builder.body(body);
    }
    builder
        .build()
        .map_err(|e| Error::InvalidRequest(crate::text::bounded_error(&e.to_string())))
}

/// A response's headers as the driver gets them; `Err` past [`MAX_RESPONSE_HEADERS`] or
/// [`MAX_HEADER_BYTES`].
pub fn response_headers(headers: &HeaderMap) -> Result<Vec<(String, String)>, Error> {
    if headers.len() > MAX_RESPONSE_HEADERS {
        return Err(Error::LimitExceeded(format!(
            "the response has {} headers; a driver gets at most {MAX_RESPONSE_HEADERS}",
            headers.len()
        )));
    }
    let mut bytes = 0;
    let mut out = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        bytes += name.as_str().len() + value.len();
        if bytes > MAX_HEADER_BYTES {
            return Err(Error::LimitExceeded(format!(
                "the response's headers are over {MAX_HEADER_BYTES} bytes"
            )));
        }
        out.push((
            name.to_string(),
            String::from_utf8_lossy(value.as_bytes()).into_owned(),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wit::http::{BasicCredential, HeaderCredential};

    fn request(headers: &[(&str, &str)]) -> Request {
        Request {
            method: Method::Get,
            url: "https://api.example.com/x".into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: Body::Empty,
            credential: None,
            capture: Vec::new(),
            timeout_ms: None,
        }
    }

    #[test]
    fn the_authority_and_the_framing_are_the_hosts() {
        for name in [
            "Host",
            "connection",
            "Transfer-Encoding",
            "content-length",
            "TE",
            "upgrade",
            "Keep-Alive",
            "Proxy-Authorization",
            "proxy-connection",
            "trailer",
        ] {
            let err = headers(&request(&[(name, "x")]).headers).unwrap_err();
            assert!(
                matches!(&err, Error::InvalidRequest(m) if m.contains(&format!("{name:?}"))),
                "{name}: {err:?}"
            );
        }
        assert!(headers(&request(&[("X-Host", "a"), ("Accept", "b")]).headers).is_ok());
    }

    #[test]
    fn headers_are_counted_and_weighed() {
        let many: Vec<(String, String)> =
            (0..101).map(|i| (format!("x-h{i}"), "v".into())).collect();
        assert!(matches!(headers(&many), Err(Error::InvalidRequest(_))));
        let heavy = vec![("x-big".to_string(), "v".repeat(MAX_HEADER_BYTES))];
        assert!(matches!(headers(&heavy), Err(Error::InvalidRequest(_))));
        // 24,577 headers once panicked inside `HeaderMap`; now they are refused.
        let flood: Vec<(String, String)> =
            (0..24_577).map(|i| ("x-a".to_string(), i.to_string())).collect();
        assert!(headers(&flood).is_err());
        assert!(headers(&[("bad name".into(), "v".into())]).is_err());
        assert!(headers(&[("x-ok".into(), "line\nbreak".into())]).is_err());
    }

    fn bindings(header: Option<&str>) -> HashMap<String, SecretBinding> {
        HashMap::from([(
            "key".to_string(),
            SecretBinding::parse(
                "key",
                &["https://api.example.com".into()],
                header,
                &[],
            )
            .unwrap(),
        )])
    }

    #[test]
    fn a_header_secret_stays_in_its_header() {
        let mut r = request(&[]);
        let bound = bindings(Some("X-Api-Key"));
        r.credential = Some(Credential::Header(HeaderCredential {
            name: "x-api-key".into(),
            secret: "key".into(),
        }));
        assert_eq!(
            secret_uses(&r, &bound).unwrap(),
            [("key".to_string(), SecretUse::Header("x-api-key".into()))]
        );
        for credential in [
            Credential::Bearer("key".into()),
            Credential::Basic(BasicCredential {
                username: Value::Secret("key".into()),
                password: Value::Text(String::new()),
            }),
            Credential::Header(HeaderCredential {
                name: "x-other".into(),
                secret: "key".into(),
            }),
        ] {
            r.credential = Some(credential.clone());
            assert!(
                matches!(secret_uses(&r, &bound), Err(Error::Denied(_))),
                "{credential:?}"
            );
        }
        r.credential = None;
        r.body = Body::Form(vec![("k".into(), Value::Secret("key".into()))]);
        assert!(matches!(secret_uses(&r, &bound), Err(Error::Denied(_))));
        // Without a declared header, a secret goes in no header of the driver's choosing.
        r.body = Body::Empty;
        r.credential = Some(Credential::Header(HeaderCredential {
            name: "cookie".into(),
            secret: "key".into(),
        }));
        assert!(matches!(secret_uses(&r, &bindings(None)), Err(Error::Denied(_))));
        r.credential = Some(Credential::Bearer("key".into()));
        assert!(secret_uses(&r, &bindings(None)).is_ok());
    }

    #[test]
    fn the_credential_replaces_a_drivers_own_authorization() {
        let client = reqwest::Client::new();
        let mut r = request(&[("Authorization", "Bearer planted")]);
        r.credential = Some(Credential::Bearer("key".into()));
        let resolved = HashMap::from([("key".into(), SecretValue::new(b"s3cret".to_vec()))]);
        let url = url::Url::parse(&r.url).unwrap();
        let built = assemble(&client, url, r, &resolved).unwrap();
        let values: Vec<_> = built
            .headers()
            .get_all("authorization")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        assert_eq!(values, ["Bearer s3cret"]);
        assert!(built.headers().get("host").is_none());
    }
}
