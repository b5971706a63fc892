//! OAuth 2.0 token endpoints (RFC 6749 §3.2): the request every provider's endpoint takes,
//! and what its refusals mean.
//!
//! ```ignore
//! let response = oauth::token_request("Acme", url, form, &[("/access_token", "access_token")])?;
//! // 2xx only: the tokens were captured by the host and read "[redacted]" in the body.
//! ```

use crate::bindings::sluice::driver::http;
use crate::{DriverError, error};

/// POST `form` to the token endpoint at `url`, the host capturing each `(pointer, secret)`
/// of the answer into the secret. A `2xx` answer is returned; a refusal (`400`, `401`,
/// `403`: `invalid_grant`, bad client credentials) is a non-retryable `upstream` error,
/// which makes the host mark the installation `needs_reauth`; `429` is `rate-limited`; the
/// rest (`5xx`, transport) is retryable.
pub fn token_request(
    provider: &str,
    url: String,
    form: Vec<(String, http::Value)>,
    captures: &[(&str, &str)],
) -> Result<http::Response, DriverError> {
    let request = http::Request {
        method: http::Method::Post,
        url,
        headers: vec![("Accept".into(), "application/json".into())],
        body: http::Body::Form(form),
        credential: None,
        capture: captures
            .iter()
            .map(|(pointer, secret)| http::Capture {
                pointer: (*pointer).into(),
                secret: (*secret).into(),
            })
            .collect(),
        timeout_ms: Some(30_000),
    };
    let response = http::send(&request).map_err(|e| error::from_http(e, provider))?;
    match response.status {
        200..=299 => Ok(response),
        status @ (400 | 401 | 403) => Err(error::upstream(
            status,
            error_message(status, &response.body),
            false,
        )),
        status => Err(error::from_status(
            status,
            &response.headers,
            error_message(status, &response.body),
        )),
    }
}

/// `error: error_description` of an RFC 6749 §5.2 error answer (or a provider's
/// `{"errors": "…"}`), else the status: never the body itself, which could echo a secret.
pub fn error_message(status: u16, body: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return format!("status {status}");
    };
    let text = |key: &str| v.get(key).and_then(|s| s.as_str()).map(str::to_owned);
    match (text("error"), text("error_description"), text("errors")) {
        (Some(e), Some(d), _) => format!("{e}: {d}"),
        (Some(e), None, _) => e,
        (None, _, Some(errors)) => errors,
        _ => format!("status {status}"),
    }
}

#[cfg(test)]
mod tests {
    use super::error_message;

    #[test]
    fn error_answers_are_summarised() {
        // stripe_connect_oauth_cases.json `token_response_error`.
        let stripe = br#"{"error": "invalid_grant", "error_description": "Authorization code does not exist"}"#;
        assert_eq!(
            error_message(400, stripe),
            "invalid_grant: Authorization code does not exist"
        );
        assert_eq!(
            error_message(400, br#"{"error":"invalid_client"}"#),
            "invalid_client"
        );
        assert_eq!(
            error_message(401, br#"{"errors":"[API] Invalid API key"}"#),
            "[API] Invalid API key"
        );
        assert_eq!(
            error_message(502, b"<html>bad gateway</html>"),
            "status 502"
        );
    }
}
