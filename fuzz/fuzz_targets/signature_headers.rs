//! The signature headers providers send, as any bytes: Stripe's `Stripe-Signature`
//! (parsed and verified against a fixed body), Shopify's HMAC header and Hotmart's hottok
//! header. None may panic, and a parsed Stripe header keeps its invariants.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_driver_stripe::signature;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(header) = signature::parse_header::<()>(&text) {
        assert!(header.v1.len() <= header.v1_entries);
        assert!(header.v1.iter().all(|sig| sig.len() == 32));
        assert!(header.timestamp >= 0);
    }
    for now in [0, 1_700_000_000, i64::MAX, i64::MIN] {
        let _ = signature::verify::<()>(Some(&text), b"{}", now, Some(300), |_, _| Ok(false));
        let _ = signature::verify::<()>(Some(&text), data, now, None, |_, _| Ok(true));
    }
    let headers = vec![
        ("X-Shopify-Hmac-Sha256".to_string(), text.to_string()),
        ("X-HOTMART-HOTTOK".to_string(), text.to_string()),
    ];
    let _ = sluice_driver_shopify::webhook::verify::<()>(&headers, data, |_, _| Ok(()));
    let _ = sluice_driver_hotmart::webhook::presented_hottok(&headers);
});
