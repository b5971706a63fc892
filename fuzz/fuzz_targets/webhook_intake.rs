//! What a webhook body becomes, for any bytes: each driver's raw-event extraction and
//! normalization, as its `receive` runs them once the signature has passed. Anything may
//! be refused; nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Stripe: one event object.
    if let Ok(event) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = sluice_driver_stripe::events::raw_event_from(&event, data.to_vec());
        let _ = sluice_driver_stripe::normalize::normalize_event(&event);
    }
    // Shopify: the body under each topic the driver maps, with valid headers.
    if let Ok(settings) = sluice_driver_shopify::settings::parse(r#"{"shop":"s.myshopify.com"}"#) {
        for topic in [
            "orders/create",
            "orders/paid",
            "refunds/create",
            "customers/update",
            "shop/redact",
        ] {
            let headers = vec![
                ("X-Shopify-Topic".to_string(), topic.to_string()),
                ("X-Shopify-Webhook-Id".to_string(), "w1".to_string()),
                (
                    "X-Shopify-Shop-Domain".to_string(),
                    "s.myshopify.com".to_string(),
                ),
            ];
            let _ = sluice_driver_shopify::webhook::handle(&settings, &headers, data);
            let _ = sluice_driver_shopify::normalize::normalize(topic, data);
        }
    }
    // Hotmart: a postback, then its records under its own event type and a few others.
    if let Ok(raw) = sluice_driver_hotmart::webhook::raw_event(data) {
        let _ = sluice_driver_hotmart::normalize::normalize(&raw.event_type, data);
    }
    for event in [
        "PURCHASE_APPROVED",
        "PURCHASE_REFUNDED",
        "SUBSCRIPTION_CANCELLATION",
    ] {
        let _ = sluice_driver_hotmart::normalize::normalize(event, data);
    }
});
