//! Installation settings as any text, through each driver's own parser (the host has
//! validated them against the JSON Schema first, but the parsers must not rely on it).
//! Anything may be refused; nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = sluice_driver_stripe::settings::parse(&text);
    if let Ok(settings) = sluice_driver_shopify::settings::parse(&text) {
        let _ = sluice_driver_shopify::oauth::token_url(&settings);
    }
    let _ = sluice_driver_hotmart::settings::parse(&text);
});
