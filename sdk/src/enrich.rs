//! Enrichment: fetching, while normalizing, what a payload lacks (a thin event's object, a
//! refund's currency), through `http` with the installation's credentials.
//!
//! The call counts against the export's outbound budget and deadline like any other. A
//! failure is an error of the whole normalization, never a record with a guessed field:
//! the host keeps the raw event failed and retries it with backoff (a provider down for a
//! while costs a delay, not data). Each fetched field is named on its record
//! ([`crate::record::enriched`]), so consumers see which values came from an extra call.
//!
//! ```ignore
//! let fetched = enrich::get_json("Stripe", url, headers, Some(Credential::Bearer("api_key".into())))?;
//! let currency = fetched.body["currency"].as_str();
//! record::enriched(&mut record, &fetched.source, &["currency"]);
//! ```

use crate::bindings::sluice::driver::http;
use crate::{DriverError, error};

/// Why a fetch gave nothing.
#[derive(Debug, Clone, PartialEq)]
pub enum FetchError {
    /// The installation cannot make the call (no credential for it); permanent until the
    /// operator changes the installation. Each caller decides whether that is a warning
    /// on the record or an error of the normalization.
    Unavailable(String),
    /// The call failed (transport, `5xx`, `429`, `404`): the normalization fails with this
    /// error, and the host retries it later.
    Failed(DriverError),
}

/// What a driver's mapping code fetches through, so that it builds and tests natively
/// with a fake; the component's implementation calls [`get_json`].
pub trait Fetch {
    /// GET `path` (relative to the provider's API base, as the driver defines it; it may
    /// have a query).
    fn get(&mut self, path: &str) -> Result<Fetched, FetchError>;
}

/// No enrichment: every fetch is [`FetchError::Unavailable`] (native benchmark builds,
/// tools that normalize offline).
pub struct NoFetch;

impl Fetch for NoFetch {
    fn get(&mut self, _: &str) -> Result<Fetched, FetchError> {
        Err(FetchError::Unavailable("enrichment is off".into()))
    }
}

/// A fetched JSON document and the call it came from.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// `GET <url without query>`, for [`crate::record::enriched`].
    pub source: String,
    /// The parsed answer.
    pub body: serde_json::Value,
}

/// How long one enrichment call may take; the export's deadline still bounds it.
const TIMEOUT_MS: u32 = 10_000;

/// `GET url` (JSON). A `2xx` JSON answer is returned; `429` is `rate-limited`; other
/// statuses are `upstream` errors (retryable for `5xx`, `408`; a `401` names the
/// credential); a body that is not JSON is a retryable `upstream` error, since a proxy's
/// error page is the likely cause.
pub fn get_json(
    provider: &str,
    url: String,
    headers: Vec<(String, String)>,
    credential: Option<http::Credential>,
) -> Result<Fetched, DriverError> {
    let mut headers = headers;
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("accept"))
    {
        headers.push(("Accept".into(), "application/json".into()));
    }
    let source = source_of("GET", &url);
    let request = http::Request {
        method: http::Method::Get,
        url,
        headers,
        body: http::Body::Empty,
        credential,
        capture: Vec::new(),
        timeout_ms: Some(TIMEOUT_MS),
    };
    let response = http::send(&request).map_err(|e| error::from_http(e, provider))?;
    match response.status {
        200..=299 => {
            let body = serde_json::from_slice(&response.body).map_err(|e| {
                error::upstream(
                    response.status,
                    format!("{provider} answered {source} with a body that is not JSON: {e}"),
                    true,
                )
            })?;
            Ok(Fetched { source, body })
        }
        status => Err(error::from_status(
            status,
            &response.headers,
            format!(
                "{provider} answered {source} with {}",
                crate::oauth::error_message(status, &response.body)
            ),
        )),
    }
}

/// `METHOD url` without the URL's query, fragment and `user:password@` (which can carry
/// ids or credentials a record should not repeat).
pub fn source_of(method: &str, url: &str) -> String {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    let url = &url[..end];
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let rest = match rest[..authority_end].rfind('@') {
        Some(at) => &rest[at + 1..],
        None => rest,
    };
    if scheme.is_empty() {
        format!("{method} {rest}")
    } else {
        format!("{method} {scheme}://{rest}")
    }
}

#[cfg(test)]
mod tests {
    use super::source_of;

    #[test]
    fn sources_drop_the_query() {
        assert_eq!(
            source_of(
                "GET",
                "https://api.stripe.com/v1/charges/ch_1?expand[]=refunds"
            ),
            "GET https://api.stripe.com/v1/charges/ch_1"
        );
        assert_eq!(
            source_of("GET", "https://x.myshopify.com/a.json#f"),
            "GET https://x.myshopify.com/a.json"
        );
        assert_eq!(source_of("GET", "https://a/b"), "GET https://a/b");
        assert_eq!(
            source_of("GET", "https://user:pa@ss@api.example/v1/x?k=1"),
            "GET https://api.example/v1/x"
        );
        assert_eq!(
            source_of("GET", "http://127.0.0.1:9/a@b"),
            "GET http://127.0.0.1:9/a@b"
        );
    }
}
