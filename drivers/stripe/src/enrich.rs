//! What a Stripe event lacks, fetched from the API while normalizing: the object of a thin
//! event, the refunds of a `charge.refunded` rendered without them (API versions from
//! 2022-11-15 no longer embed `refunds` in a charge), a refund's currency from its charge.
//!
//! The mapping code asks through [`Fetch`] (paths from `/v1/`), so it builds and tests
//! natively with a fake; the component's [`Fetch`] is `http` with the installation's
//! `api_key`. An installation without one cannot enrich: [`FetchError::Unavailable`],
//! which each caller turns into a warning or an error as fits what is missing.

pub use sluice_sdk::enrich::{Fetch, FetchError, Fetched, NoFetch};

/// Whether `id` can go into a URL path as it is (Stripe ids are `[A-Za-z0-9_]`).
pub fn safe_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 255 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Whether a thin event's `related_object.url` is a plain Stripe API path: `/v1/…` or
/// `/v2/…` of safe segments, no query, no dot segments, no scheme or host.
pub fn safe_path(path: &str) -> bool {
    let Some(rest) = path
        .strip_prefix("/v1/")
        .or_else(|| path.strip_prefix("/v2/"))
    else {
        return false;
    };
    path.len() <= 512
        && rest.split('/').all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_paths() {
        assert!(safe_id("ch_3L7z2aDu4p87RxPw290ERIXH"));
        assert!(!safe_id("ch_1/../../v1/accounts"));
        assert!(!safe_id(""));
        assert!(safe_path(
            "/v1/billing/meters/mtr_test_61R9IeP0SgKbYROOx41PEAQhH0qO23oW"
        ));
        assert!(safe_path("/v1/charges/ch_1"));
        assert!(!safe_path("https://evil.example/v1/charges/ch_1"));
        assert!(!safe_path("//evil.example/v1/charges"));
        assert!(!safe_path("/v1/charges/../../admin"));
        assert!(!safe_path("/v1/charges/ch_1?expand[]=customer"));
        assert!(!safe_path("/v1/"));
        assert!(!safe_path("/v3/x"));
    }
}
