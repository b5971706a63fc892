//! Constructors for [`DriverError`] variants, so drivers write `error::bad_request("…")`.

use crate::bindings::sluice::driver::http;
use crate::types::{DriverError, RateLimit, UpstreamError};

/// Missing or invalid signature, token or timestamp (webhooks answer `401`).
pub fn unauthorized(msg: impl Into<String>) -> DriverError {
    DriverError::Unauthorized(msg.into())
}

/// The payload cannot be understood (webhooks answer `400`).
pub fn bad_request(msg: impl Into<String>) -> DriverError {
    DriverError::BadRequest(msg.into())
}

/// The installation's settings cannot be used for this call.
pub fn invalid_settings(msg: impl Into<String>) -> DriverError {
    DriverError::InvalidSettings(msg.into())
}

/// The provider answered with an error status.
pub fn upstream(status: u16, msg: impl Into<String>, retryable: bool) -> DriverError {
    DriverError::Upstream(UpstreamError {
        status,
        message: msg.into(),
        retryable,
    })
}

/// The provider answered with an error status; retryable for `408`, `409`, `425` and `5xx`.
pub fn upstream_status(status: u16, msg: impl Into<String>) -> DriverError {
    let retryable = matches!(status, 408 | 409 | 425) || status >= 500;
    upstream(status, msg, retryable)
}

/// The provider asked us to slow down.
pub fn rate_limited(retry_after_ms: u64, msg: impl Into<String>) -> DriverError {
    DriverError::RateLimited(RateLimit {
        retry_after_ms,
        message: msg.into(),
    })
}

/// This driver does not support the operation.
pub fn unsupported(msg: impl Into<String>) -> DriverError {
    DriverError::Unsupported(msg.into())
}

/// A bug or an unexpected state inside the driver.
pub fn internal(msg: impl Into<String>) -> DriverError {
    DriverError::Internal(msg.into())
}

/// Map an outbound-HTTP failure (`http.send`) to a driver error. A denied destination or a
/// credential naming a secret the installation lacks is the operator's to fix
/// (`invalid-settings`); a timeout or transport failure is a retryable upstream error.
pub fn from_http(e: http::Error, provider: &str) -> DriverError {
    match e {
        http::Error::Denied(m) => invalid_settings(format!("outbound request denied: {m}")),
        http::Error::MissingCredential(m) => {
            invalid_settings(format!("outbound request refused: {m}"))
        }
        http::Error::InvalidRequest(m) => internal(format!("invalid outbound request: {m}")),
        http::Error::LimitExceeded(m) => internal(format!("outbound request budget spent: {m}")),
        http::Error::Timeout => upstream(504, format!("request to {provider} timed out"), true),
        http::Error::Transport(m) => upstream(502, format!("transport error: {m}"), true),
    }
}

/// The error for a non-2xx provider answer: `429` is rate-limited (after `Retry-After`,
/// 1 s when absent), anything else an upstream error.
pub fn from_status(
    status: u16,
    headers: &[(String, String)],
    message: impl Into<String>,
) -> DriverError {
    if status == 429 {
        let wait = crate::paging::retry_after(headers).unwrap_or(1_000);
        rate_limited(wait, message)
    } else {
        upstream_status(status, message)
    }
}

/// Parse an HTTP `Retry-After` header given in (possibly fractional) seconds into
/// milliseconds, e.g. `"2.5"` → `2500`. HTTP dates and garbage give `None`.
pub fn retry_after_ms(value: &str) -> Option<u64> {
    let v = value.trim();
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: u64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut ms = 0u64;
    for (i, b) in frac.bytes().take(3).enumerate() {
        ms += u64::from(b - b'0') * 10u64.pow(2 - i as u32);
    }
    secs.checked_mul(1000)?.checked_add(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_http_errors_map_to_driver_errors() {
        let h = vec![("Retry-After".to_string(), "1.5".to_string())];
        assert!(
            matches!(from_status(429, &h, "slow"), DriverError::RateLimited(r) if r.retry_after_ms == 1500)
        );
        assert!(
            matches!(from_status(429, &[], "slow"), DriverError::RateLimited(r) if r.retry_after_ms == 1000)
        );
        assert!(matches!(from_status(503, &[], "down"), DriverError::Upstream(u) if u.retryable));
        assert!(matches!(from_status(404, &[], "gone"), DriverError::Upstream(u) if !u.retryable));
        assert!(matches!(
            from_http(http::Error::Denied("x".into()), "P"),
            DriverError::InvalidSettings(_)
        ));
        let missing = http::Error::MissingCredential("no \"api_key\" secret".into());
        assert!(matches!(
            from_http(missing, "P"),
            DriverError::InvalidSettings(_)
        ));
        assert!(matches!(
            from_http(http::Error::InvalidRequest("bad URL".into()), "P"),
            DriverError::Internal(_)
        ));
        assert!(
            matches!(from_http(http::Error::Timeout, "P"), DriverError::Upstream(u) if u.status == 504 && u.retryable)
        );
    }

    #[test]
    fn constructors() {
        assert_eq!(unauthorized("x"), DriverError::Unauthorized("x".into()));
        assert!(matches!(
            upstream_status(503, "down"),
            DriverError::Upstream(UpstreamError {
                status: 503,
                retryable: true,
                ..
            })
        ));
        assert!(matches!(
            upstream_status(404, "nope"),
            DriverError::Upstream(UpstreamError {
                retryable: false,
                ..
            })
        ));
    }

    #[test]
    fn retry_after() {
        assert_eq!(retry_after_ms("2"), Some(2000));
        assert_eq!(retry_after_ms(" 2.5 "), Some(2500));
        assert_eq!(retry_after_ms("0.0125"), Some(12));
        assert_eq!(retry_after_ms(".5"), Some(500));
        assert_eq!(retry_after_ms(""), None);
        assert_eq!(retry_after_ms("-1"), None);
        assert_eq!(retry_after_ms("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
