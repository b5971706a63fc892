//! Webhook deliveries: header lookup, HMAC verification and raw events.
//!
//! Shopify names its headers `X-Shopify-*` (`X-Shopify-Hmac-Sha256`, `X-Shopify-Topic`, …);
//! the newer "Events" deliveries use the same names without the `X-` prefix
//! (`shopify-hmac-sha256`, …). Header names compare case-insensitively, so both spellings and
//! any case are accepted; the `X-` form wins when both are present.

use serde_json::Value;
use sluice_sdk::bindings::exports::sluice::driver::ingest::RawEvent;
use sluice_sdk::{headers, time};

use crate::settings::Settings;
use crate::shop;

/// Header suffixes (after `X-Shopify-` / `Shopify-`).
pub const HMAC: &str = "Hmac-Sha256";
/// The webhook topic, e.g. `orders/create`.
pub const TOPIC: &str = "Topic";
/// The shop the delivery is for.
pub const SHOP_DOMAIN: &str = "Shop-Domain";
/// The delivery's id (deduplication key).
pub const WEBHOOK_ID: &str = "Webhook-Id";
/// The Admin API version the payload is rendered in.
pub const API_VERSION: &str = "API-Version";
/// When Shopify triggered the webhook (RFC 3339).
pub const TRIGGERED_AT: &str = "Triggered-At";

/// The value of Shopify header `name` (`X-Shopify-{name}`, else `Shopify-{name}`), trimmed.
pub fn header<'a>(request_headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers::get(request_headers, &format!("X-Shopify-{name}"))
        .or_else(|| headers::get(request_headers, &format!("Shopify-{name}")))
        .map(str::trim)
}

/// Why a delivery is refused before or after the HMAC check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyError<E> {
    /// The request has no (or an empty) HMAC header.
    MissingHmac,
    /// The body is empty (Shopify never signs an empty delivery).
    MissingBody,
    /// The checker refused the HMAC, or failed.
    Check(E),
}

/// Verify a delivery: the HMAC header must be present and the body non-empty, then `check`
/// (in the component: `sluice_sdk::verify::hmac_sha256_base64` over `webhook_secret`, host-side)
/// decides over the raw body and the header's text.
pub fn verify<E>(
    request_headers: &[(String, String)],
    body: &[u8],
    check: impl FnOnce(&[u8], Option<&str>) -> Result<(), E>,
) -> Result<(), VerifyError<E>> {
    let hmac = header(request_headers, HMAC)
        .filter(|h| !h.is_empty())
        .ok_or(VerifyError::MissingHmac)?;
    if body.is_empty() {
        return Err(VerifyError::MissingBody);
    }
    check(body, Some(hmac)).map_err(VerifyError::Check)
}

/// The app-level routing key: the shop domain header, normalised; `None` when absent or not a
/// shop domain. Only reads the request.
pub fn route_key(request_headers: &[(String, String)]) -> Option<String> {
    header(request_headers, SHOP_DOMAIN).and_then(shop::sanitize)
}

/// The topic Shopify sends when a merchant uninstalls the app (the token is revoked).
pub const APP_UNINSTALLED: &str = "app/uninstalled";

/// What a verified delivery becomes.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// One raw event to store.
    Event(Box<RawEvent>),
    /// A topic the installation does not store: acknowledge, store nothing.
    Ignored {
        /// The delivery's topic.
        topic: String,
    },
}

/// Turn a (verified) delivery into a raw event. Errors (human-readable) are bad requests:
/// missing topic / webhook id / shop domain, a shop that is not the installation's, or a body
/// that is not JSON. The payload is the exact body.
pub fn handle(
    settings: &Settings,
    request_headers: &[(String, String)],
    body: &[u8],
) -> Result<Outcome, String> {
    let topic = header(request_headers, TOPIC)
        .filter(|t| !t.is_empty())
        .ok_or("missing X-Shopify-Topic header")?
        .to_ascii_lowercase();
    let id = header(request_headers, WEBHOOK_ID)
        .filter(|t| !t.is_empty())
        .ok_or("missing X-Shopify-Webhook-Id header")?
        .to_string();
    let domain = header(request_headers, SHOP_DOMAIN)
        .filter(|t| !t.is_empty())
        .ok_or("missing X-Shopify-Shop-Domain header")?;
    let shop = shop::sanitize(domain)
        .ok_or_else(|| format!("X-Shopify-Shop-Domain {domain:?} is not a shop domain"))?;
    if shop != settings.shop {
        return Err(format!(
            "delivery is for shop {shop}, this installation is for {}",
            settings.shop
        ));
    }
    let payload =
        serde_json::from_slice::<Value>(body).map_err(|e| format!("body is not JSON: {e}"))?;
    // Shopify signs the body only; the shop header is not signed. Where the signed body
    // names its shop (shop/*, app/uninstalled, the compliance topics), it must be this
    // installation's, so a delivery captured from one shop cannot be replayed into
    // another installation of the same app.
    for field in ["shop_domain", "myshopify_domain"] {
        if let Some(named) = payload.get(field).and_then(Value::as_str)
            && shop::sanitize(named).as_deref() != Some(settings.shop.as_str())
        {
            return Err(format!(
                "the signed body names shop {named:?} in {field}, this installation is for {}",
                settings.shop
            ));
        }
    }
    if !settings.wants_topic(&topic) {
        return Ok(Outcome::Ignored { topic });
    }
    let occurred_at =
        header(request_headers, TRIGGERED_AT).and_then(|t| time::parse_rfc3339(t).ok());
    Ok(Outcome::Event(Box::new(RawEvent {
        provider_event_id: id,
        event_type: topic,
        account_key: Some(shop),
        occurred_at,
        payload: body.to_vec(),
        api_version: header(request_headers, API_VERSION).map(str::to_string),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn header_names_old_and_new() {
        let old = h(&[("X-Shopify-Topic", "orders/create")]);
        let new = h(&[("shopify-topic", "orders/paid")]);
        let both = h(&[("shopify-topic", "b"), ("x-shopify-topic", "a")]);
        assert_eq!(header(&old, TOPIC), Some("orders/create"));
        assert_eq!(header(&new, TOPIC), Some("orders/paid"));
        assert_eq!(header(&both, TOPIC), Some("a"));
    }

    #[test]
    fn handles_topics_and_refuses_malformed() {
        let s = settings::parse(r#"{"shop":"s.myshopify.com","webhook_topics":["orders/create"]}"#)
            .unwrap();
        let base = [
            ("X-Shopify-Topic", "orders/create"),
            ("X-Shopify-Webhook-Id", "w1"),
            ("X-Shopify-Shop-Domain", "S.myshopify.com"),
            ("X-Shopify-Triggered-At", "2024-01-01T00:00:00-05:00"),
        ];
        let Outcome::Event(e) = handle(&s, &h(&base), b"{}").unwrap() else {
            panic!()
        };
        assert_eq!(
            (
                e.provider_event_id.as_str(),
                e.event_type.as_str(),
                e.account_key.as_deref()
            ),
            ("w1", "orders/create", Some("s.myshopify.com"))
        );
        assert_eq!(e.occurred_at.map(|d| d.seconds), Some(1_704_085_200));
        let mut other = base;
        other[0].1 = "products/create";
        assert_eq!(
            handle(&s, &h(&other), b"{}").unwrap(),
            Outcome::Ignored {
                topic: "products/create".into()
            }
        );
        assert!(handle(&s, &h(&base), b"{nope").is_err());
        for skip in 0..3 {
            let partial: Vec<_> = base
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != skip)
                .map(|(_, p)| *p)
                .collect();
            assert!(
                handle(&s, &h(&partial), b"{}").is_err(),
                "without {:?}",
                base[skip].0
            );
        }
        let mut foreign = base;
        foreign[2].1 = "other.myshopify.com";
        assert!(
            handle(&s, &h(&foreign), b"{}")
                .unwrap_err()
                .contains("other.myshopify.com")
        );
    }

    /// The compliance payloads (shopify.dev, "Privacy law compliance": `shop/redact` is
    /// `{"shop_id": 954889, "shop_domain": "{shop}.myshopify.com"}`) and `app/uninstalled`
    /// (a shop object with `myshopify_domain`) name their shop inside the signed body.
    #[test]
    fn a_signed_body_naming_another_shop_is_refused() {
        let s = settings::parse(r#"{"shop":"s.myshopify.com"}"#).unwrap();
        let headers = |topic: &'static str| {
            h(&[
                ("X-Shopify-Topic", topic),
                ("X-Shopify-Webhook-Id", "w1"),
                ("X-Shopify-Shop-Domain", "s.myshopify.com"),
            ])
        };
        let replayed = br#"{"shop_id":954889,"shop_domain":"other.myshopify.com"}"#;
        let err = handle(&s, &headers("shop/redact"), replayed).unwrap_err();
        assert!(
            err.contains("other.myshopify.com") && err.contains("shop_domain"),
            "{err}"
        );
        let uninstalled = br#"{"id":690933842,"myshopify_domain":"other.myshopify.com"}"#;
        assert!(handle(&s, &headers("app/uninstalled"), uninstalled).is_err());
        // Its own shop, in any case: accepted (then filtered by topic as usual).
        let own = br#"{"shop_id":954889,"shop_domain":"S.myshopify.com"}"#;
        assert!(handle(&s, &headers("shop/redact"), own).is_ok());
        // Order payloads carry no shop domain: nothing to compare.
        assert!(handle(&s, &headers("orders/create"), br#"{"id":1}"#).is_ok());
    }

    #[test]
    fn route_keys() {
        assert_eq!(
            route_key(&h(&[("X-Shopify-Shop-Domain", "Shop.MyShopify.com")])).as_deref(),
            Some("shop.myshopify.com")
        );
        assert_eq!(
            route_key(&h(&[("shopify-shop-domain", "a.myshopify.com")])).as_deref(),
            Some("a.myshopify.com")
        );
        assert_eq!(
            route_key(&h(&[("X-Shopify-Shop-Domain", "evil.com")])),
            None
        );
        assert_eq!(route_key(&[]), None);
    }
}
