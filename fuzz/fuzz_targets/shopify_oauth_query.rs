//! Shopify's OAuth callback query, as any text: decoded, canonicalised under both rules,
//! its HMAC and timestamp checked, the whole callback verified. None may panic, and the
//! canonical message depends only on the pairs (`hmac[]` is an ordinary array parameter,
//! as in Shopify's reference implementation, so it is not dropped).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_driver_shopify::oauth::{self, Canonical};

fuzz_target!(|data: &[u8]| {
    let query = String::from_utf8_lossy(data);
    let pairs = oauth::parse_query(&query);
    for rule in [Canonical::Docs, Canonical::AppJs] {
        let message = oauth::canonical_message(&pairs, rule);
        assert_eq!(message, oauth::canonical_message(&pairs, rule));
    }
    let _ = oauth::check_hmac::<()>(&pairs, |_, _| Ok(false));
    for now in [0, 1_700_000_000, i64::MAX, i64::MIN] {
        let _ = oauth::check_timestamp::<()>(&pairs, now);
    }
    if let Ok(settings) = sluice_driver_shopify::settings::parse(r#"{"shop":"s.myshopify.com"}"#) {
        let _ = oauth::verify_callback::<()>(&settings, &query, 1_700_000_000, |_, _| Ok(true));
    }
});
