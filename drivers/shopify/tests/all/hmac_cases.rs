//! Every case of `shopify/shopify_hmac_cases.json` run natively: webhook HMAC vectors through
//! `webhook::verify`, OAuth callback canonicalisation / HMAC / timestamp through `oauth`, and
//! both shop-domain lists through `shop::sanitize`.

use crate::common::{b64, hmac_sha256, native_base64_check, native_verifier, shopify_json};
use serde_json::Value;
use sluice_driver_shopify::oauth::{self, CallbackError, Canonical};
use sluice_driver_shopify::webhook::{self, VerifyError};
use sluice_driver_shopify::{settings, shop};

fn cases() -> Value {
    shopify_json("shopify_hmac_cases.json")
}

fn headers(v: &Value) -> Vec<(String, String)> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------- webhooks

#[test]
fn webhook_official_vectors() {
    let doc = cases();
    let official = doc["webhook_hmac"]["official_verbatim"].as_array().unwrap();
    let valid = &official[0];
    let secret = valid["secret"].as_str().unwrap();
    let body = valid["raw_body"].as_str().unwrap().as_bytes();
    let hs = headers(&valid["headers"]);
    assert_eq!(
        webhook::verify(&hs, body, native_base64_check(secret)),
        Ok(())
    );
    // The same header under its newer un-prefixed, lower-case name.
    let new_names: Vec<_> = hs
        .iter()
        .map(|(k, v)| {
            (
                k.to_ascii_lowercase().trim_start_matches("x-").to_string(),
                v.clone(),
            )
        })
        .collect();
    assert!(new_names.iter().any(|(k, _)| k == "shopify-hmac-sha256"));
    assert_eq!(
        webhook::verify(&new_names, body, native_base64_check(secret)),
        Ok(())
    );
    // Its expected extraction.
    let expect = &valid["expect"];
    let s =
        settings::parse(r#"{"shop":"shop1.myshopify.io","webhook_topics":["products/create"]}"#)
            .unwrap();
    let webhook::Outcome::Event(event) = webhook::handle(&s, &hs, body).unwrap() else {
        panic!("expected an event")
    };
    assert_eq!(
        event.provider_event_id,
        expect["webhookId"].as_str().unwrap()
    );
    assert_eq!(event.account_key.as_deref(), expect["domain"].as_str());
    assert_eq!(
        event.event_type.replace('/', "_").to_uppercase(),
        expect["topic"].as_str().unwrap()
    );
    assert_eq!(event.payload, body);
    assert_eq!(
        webhook::header(&hs, webhook::API_VERSION),
        expect["apiVersion"].as_str()
    );
    assert_eq!(webhook::header(&hs, webhook::HMAC), expect["hmac"].as_str());
    assert_eq!(
        webhook::route_key(&new_names).as_deref(),
        expect["domain"].as_str()
    );

    let mut ran = 1;
    for case in &official[1..] {
        let reason = case["expect"]["reason"].as_str().unwrap();
        assert_eq!(case["expect"]["valid"], false);
        match reason {
            "missing_body" => {
                assert_eq!(
                    webhook::verify(&hs, b"", native_base64_check(secret)),
                    Err(VerifyError::MissingBody)
                );
            }
            "missing_hmac" => {
                let mut empty = hs.clone();
                empty
                    .iter_mut()
                    .find(|(k, _)| k == "X-Shopify-Hmac-Sha256")
                    .unwrap()
                    .1 = String::new();
                assert_eq!(
                    webhook::verify(&empty, body, native_base64_check(secret)),
                    Err(VerifyError::MissingHmac)
                );
                let without: Vec<_> = hs
                    .iter()
                    .filter(|(k, _)| k != "X-Shopify-Hmac-Sha256")
                    .cloned()
                    .collect();
                assert_eq!(
                    webhook::verify(&without, body, native_base64_check(secret)),
                    Err(VerifyError::MissingHmac)
                );
            }
            "invalid_hmac" => {
                let mut fake = hs.clone();
                fake.iter_mut()
                    .find(|(k, _)| k == "X-Shopify-Hmac-Sha256")
                    .unwrap()
                    .1 = "fake".into();
                let raw = case["raw_body"].as_str().unwrap().as_bytes();
                assert!(matches!(
                    webhook::verify(&fake, raw, native_base64_check(secret)),
                    Err(VerifyError::Check(_))
                ));
            }
            "missing_headers" => {
                // Topic, webhook id and shop domain are required to handle a delivery; the
                // API version is only recorded.
                for name in [
                    "X-Shopify-Shop-Domain",
                    "X-Shopify-Topic",
                    "X-Shopify-Webhook-Id",
                ] {
                    let mut emptied = hs.clone();
                    emptied.iter_mut().find(|(k, _)| k == name).unwrap().1 = String::new();
                    assert!(webhook::handle(&s, &emptied, body).is_err(), "{name} empty");
                }
                let mut no_version = hs.clone();
                no_version.retain(|(k, _)| k != "X-Shopify-API-Version");
                assert!(webhook::handle(&s, &no_version, body).is_ok());
            }
            other => panic!("unhandled reason {other}"),
        }
        ran += 1;
    }
    assert_eq!(ran, 5);
}

#[test]
fn webhook_derived_vectors() {
    let doc = cases();
    let derived = doc["webhook_hmac"]["derived"].as_array().unwrap();
    assert_eq!(derived.len(), 2);
    for case in derived {
        let secret = case["secret"].as_str().unwrap();
        let body = case["raw_body"].as_str().unwrap().as_bytes();
        let header = case["expect_header"].as_str().unwrap();
        assert_eq!(b64(&hmac_sha256(secret.as_bytes(), body)), header);
        if let Some(hex) = case["expect_hex_after_decode"].as_str() {
            assert_eq!(
                sluice_sdk::verify::decode_base64(header).unwrap(),
                ::hex::decode(hex).unwrap()
            );
        }
        let hs = vec![("X-Shopify-Hmac-Sha256".to_string(), header.to_string())];
        assert_eq!(
            webhook::verify(&hs, body, native_base64_check(secret)),
            Ok(())
        );
        // Ruby's Base64.encode64 appends "\n": still accepted (the value is trimmed).
        let ruby = vec![("X-Shopify-Hmac-Sha256".to_string(), format!("{header}\n"))];
        assert_eq!(
            webhook::verify(&ruby, body, native_base64_check(secret)),
            Ok(())
        );
    }
    // The raw-body requirement: the pretty body's header does not verify the minified body.
    let pretty = &doc["webhook_hmac"]["official_verbatim"][0];
    let hs = headers(&pretty["headers"]);
    assert!(
        webhook::verify(
            &hs,
            derived[1]["raw_body"].as_str().unwrap().as_bytes(),
            native_base64_check("test_secret_key")
        )
        .is_err()
    );
    // The wrong secret fails.
    assert!(
        webhook::verify(
            &hs,
            pretty["raw_body"].as_str().unwrap().as_bytes(),
            native_base64_check("other")
        )
        .is_err()
    );
}

// ---------------------------------------------------------------- OAuth callbacks

/// A query string for fixture params (values percent-encoded, arrays as `k[]=v` repeated).
fn query_of(params: &Value) -> String {
    let enc = sluice_sdk::paging::encode_query_value;
    let mut parts = Vec::new();
    for (k, v) in params.as_object().unwrap() {
        match v {
            Value::Array(items) => {
                for i in items {
                    let text = i.as_str().map_or_else(|| i.to_string(), str::to_owned);
                    parts.push(format!("{}={}", enc(k), enc(&text)));
                }
            }
            other => parts.push(format!("{}={}", enc(k), enc(other.as_str().unwrap()))),
        }
    }
    parts.join("&")
}

fn pairs_of(params: &Value) -> Vec<(String, String)> {
    oauth::parse_query(&query_of(params))
}

#[test]
fn oauth_official_vectors() {
    let doc = cases();
    let cases = doc["oauth_query_hmac"]["official_verbatim"]
        .as_array()
        .unwrap();
    assert_eq!(cases.len(), 5);
    for (i, case) in cases.iter().enumerate() {
        let secret = case["secret"].as_str().unwrap();
        let params = &case["params"];
        let mut pairs = pairs_of(params);
        if let Some(message) = case["canonical_message"].as_str() {
            // Shopify's documented canonicalisation (shopify_python_api).
            assert_eq!(
                oauth::canonical_message(&pairs, Canonical::Docs),
                message,
                "case {i}"
            );
            if let Some(expect) = case["expect_hmac"].as_str() {
                assert_eq!(
                    ::hex::encode(hmac_sha256(secret.as_bytes(), message.as_bytes())),
                    expect,
                    "case {i}"
                );
                if params.get("hmac").is_none() {
                    pairs.push(("hmac".into(), expect.into()));
                }
            }
        }
        let result = oauth::check_hmac(&pairs, native_verifier(secret));
        let valid = case["expect_valid"].as_bool().unwrap_or(true);
        assert_eq!(result.is_ok(), valid, "case {i}: {result:?}");
        if !valid {
            assert_eq!(result, Err(CallbackError::InvalidHmac), "case {i}");
        }
    }
    // The documented vector is from 2012: the HMAC is right but the timestamp is stale.
    let pairs = pairs_of(&cases[0]["params"]);
    assert_eq!(
        oauth::check_timestamp::<String>(&pairs, 1_700_000_000),
        Err(CallbackError::TimestampOutsideTolerance)
    );
    assert_eq!(
        oauth::check_timestamp::<String>(&pairs, 1_337_178_173 + 30),
        Ok(())
    );
    // A missing timestamp is refused as such.
    assert_eq!(
        oauth::check_timestamp::<String>(&pairs_of(&cases[4]["params"]), 1_337_178_173),
        Err(CallbackError::MissingTimestamp)
    );
}

#[test]
fn oauth_derived_vectors() {
    let doc = cases();
    let cases = doc["oauth_query_hmac"]["derived"].as_array().unwrap();
    assert_eq!(cases.len(), 7);
    for (i, case) in cases.iter().enumerate() {
        let secret = case["secret"].as_str().unwrap();
        let mut pairs = pairs_of(&case["params"]);
        if let Some(message) = case["canonical_message"].as_str() {
            // shopify-app-js: `%20` for spaces; Ruby's vector has nothing to escape, so both agree.
            assert_eq!(
                oauth::canonical_message(&pairs, Canonical::AppJs),
                message,
                "case {i}"
            );
            assert_eq!(
                ::hex::encode(hmac_sha256(secret.as_bytes(), message.as_bytes())),
                case["expect_hmac"].as_str().unwrap(),
                "case {i}"
            );
            if let Some(wrong) = case.get("wrong_if_plus_encoded") {
                assert_ne!(
                    oauth::canonical_message(&pairs, Canonical::AppJs),
                    wrong["canonical_message"].as_str().unwrap()
                );
                let mut plus = pairs.clone();
                plus.push(("hmac".into(), wrong["hmac"].as_str().unwrap().into()));
                assert_eq!(
                    oauth::check_hmac(&plus, native_verifier(secret)),
                    Err(CallbackError::InvalidHmac)
                );
            }
        }
        if case.get("expect").and_then(Value::as_str) == Some("error:missing_hmac") {
            assert_eq!(
                oauth::check_hmac(&pairs, native_verifier(secret)),
                Err(CallbackError::MissingHmac)
            );
            continue;
        }
        if pairs.iter().all(|(k, _)| k != "hmac") {
            pairs.push(("hmac".into(), case["expect_hmac"].as_str().unwrap().into()));
        }
        let result = oauth::check_hmac(&pairs, native_verifier(secret));
        assert_eq!(
            result.is_ok(),
            case["expect_valid"].as_bool().unwrap_or(true),
            "case {i}: {result:?}"
        );
        if let Some(now) = case["now_unix_for_freshness"].as_i64() {
            assert_eq!(oauth::check_timestamp::<String>(&pairs, now), Ok(()));
        }
        for t in case["cases"].as_array().into_iter().flatten() {
            let now = t["now_unix"].as_i64().unwrap();
            let got = oauth::check_timestamp::<String>(&pairs, now);
            match t["expect"].as_str().unwrap() {
                "valid" => assert_eq!(got, Ok(()), "now {now}"),
                "error:timestamp_outside_tolerance" => assert_eq!(
                    got,
                    Err(CallbackError::TimestampOutsideTolerance),
                    "now {now}"
                ),
                other => panic!("unknown expectation {other}"),
            }
        }
    }
}

#[test]
fn oauth_full_callback() {
    // A callback signed the way Shopify signs it, for this installation's shop.
    let secret = "hush";
    let s = settings::parse(r#"{"shop":"some-shop.myshopify.com","client_id":"key"}"#).unwrap();
    let message = "code=a94a110d86d2452eb3e2af4cfb8a3828&shop=some-shop.myshopify.com&state=n%201&timestamp=1700000000";
    let hmac = ::hex::encode(hmac_sha256(secret.as_bytes(), message.as_bytes()));
    let query = format!(
        "code=a94a110d86d2452eb3e2af4cfb8a3828&hmac={hmac}&shop=some-shop.myshopify.com&state=n%201&timestamp=1700000000"
    );
    let callback =
        oauth::verify_callback(&s, &query, 1_700_000_010, native_verifier(secret)).unwrap();
    assert_eq!(callback.code, "a94a110d86d2452eb3e2af4cfb8a3828");
    assert_eq!(callback.shop, "some-shop.myshopify.com");
    assert_eq!(
        oauth::verify_callback(&s, &query, 1_700_000_500, native_verifier(secret)),
        Err(CallbackError::TimestampOutsideTolerance)
    );
    assert_eq!(
        oauth::verify_callback(&s, &query, 1_700_000_010, native_verifier("other")),
        Err(CallbackError::InvalidHmac)
    );
    let other = settings::parse(r#"{"shop":"other.myshopify.com"}"#).unwrap();
    assert!(matches!(
        oauth::verify_callback(&other, &query, 1_700_000_010, native_verifier(secret)),
        Err(CallbackError::BadShop(_))
    ));
    // A signed callback whose shop is not a shop domain is refused even with a valid HMAC.
    let evil_message = "code=c&shop=evil.com&timestamp=1700000000";
    let evil = format!(
        "code=c&hmac={}&shop=evil.com&timestamp=1700000000",
        ::hex::encode(hmac_sha256(secret.as_bytes(), evil_message.as_bytes()))
    );
    assert!(matches!(
        oauth::verify_callback(&s, &evil, 1_700_000_010, native_verifier(secret)),
        Err(CallbackError::BadShop(_))
    ));
    // Forms: the client secret is a reference, never a value.
    use sluice_sdk::bindings::sluice::driver::http::Value as V;
    let form = oauth::code_form(
        &s,
        oauth::client_id_value(&s, "client_id"),
        "webhook_secret",
        "abc",
    );
    // The fields of shopify_oauth_token_cases.json `request_body_expiring`: expiring
    // offline tokens are the default.
    assert_eq!(
        form,
        vec![
            ("client_id".into(), V::Text("key".into())),
            ("client_secret".into(), V::Secret("webhook_secret".into())),
            ("code".into(), V::Text("abc".into())),
            ("expiring".into(), V::Text("1".into())),
        ]
    );
    let mut non_expiring = s.clone();
    non_expiring.expiring_offline_tokens = false;
    let form = oauth::code_form(
        &non_expiring,
        V::Text("key".into()),
        "webhook_secret",
        "abc",
    );
    assert_eq!(form[3], ("expiring".into(), V::Text("0".into())));
    assert_eq!(
        oauth::token_url(&s),
        "https://some-shop.myshopify.com/admin/oauth/access_token"
    );
}

// ---------------------------------------------------------------- shop domains

#[test]
fn shop_domain_lists() {
    let doc = cases();
    let v = &doc["shop_domain_validation"];
    let mut checked = 0;
    for list in ["valid", "ruby_sanitize_valid"] {
        for pair in v[list].as_array().unwrap() {
            let (input, expect) = (pair[0].as_str().unwrap(), pair[1].as_str().unwrap());
            assert_eq!(
                shop::sanitize(input).as_deref(),
                Some(expect),
                "{list}: {input:?}"
            );
            checked += 1;
        }
    }
    for list in ["invalid", "ruby_sanitize_invalid"] {
        for input in v[list].as_array().unwrap() {
            let input = input.as_str().unwrap();
            assert_eq!(shop::sanitize(input), None, "{list}: {input:?}");
            checked += 1;
        }
    }
    assert_eq!(checked, 5 + 7 + 3 + 8);
    // Settings take only the normalised form.
    assert!(settings::parse(r#"{"shop":"test-shop.myshopify.com"}"#).is_ok());
    for raw in [
        "Test-Shop.MyShopify.com",
        "https://test-shop.myshopify.com",
        "admin.shopify.com/store/my-shop",
        "evil.com",
    ] {
        assert!(
            settings::parse(&serde_json::json!({"shop": raw}).to_string()).is_err(),
            "{raw}"
        );
    }
}
