//! Money read from the JSON number's text, never through a float.
//!
//! Hotmart sends prices as JSON numbers (`1500`, `97.9`, `1500.0`). `serde_json::Value`
//! would turn them into `f64`, so money fields are looked up as [`RawValue`]s instead, and
//! their exact text is converted to minor units with the SDK by the currency's exponent.

use std::collections::BTreeMap;

use serde_json::value::RawValue;
use sluice_sdk::Money;
use sluice_sdk::money::{currency_code, money_from_decimal_str};

/// The raw JSON text at `path` (object keys) inside `text`, if every step exists.
pub fn raw_at<'a>(text: &'a str, path: &[&str]) -> Option<&'a RawValue> {
    let mut cur: &'a RawValue = serde_json::from_str(text).ok()?;
    for key in path {
        let map: BTreeMap<String, &'a RawValue> = serde_json::from_str(cur.get()).ok()?;
        cur = map.get(*key).copied()?;
    }
    Some(cur)
}

/// The elements of the JSON array at `path`, as raw texts (empty when absent or not a list).
pub fn raw_list_at<'a>(text: &'a str, path: &[&str]) -> Vec<&'a RawValue> {
    raw_at(text, path)
        .and_then(|raw| serde_json::from_str(raw.get()).ok())
        .unwrap_or_default()
}

/// The decimal text of a raw JSON number (or numeric string); `None` for `null` and others.
pub fn decimal_text(raw: &RawValue) -> Option<String> {
    let text = raw.get().trim();
    if text.starts_with('"') {
        let s: String = serde_json::from_str(text).ok()?;
        return Some(s);
    }
    text.bytes()
        .next()
        .filter(|b| b.is_ascii_digit() || *b == b'-')
        .map(|_| text.to_string())
}

/// Exact money from a price object `{"value": <number>, "<currency key>": "BRL"}` found at
/// `path` in `text`. Tries each key in `currency_keys` (`currency_value` in webhooks,
/// `currency_code` in the API). `Ok(None)` when the object, its value or its currency is
/// absent; `Err` when they are present but unusable (an unknown currency, too many decimals
/// for its exponent, exponent notation).
pub fn money_at(
    text: &str,
    path: &[&str],
    currency_keys: &[&str],
) -> Result<Option<Money>, String> {
    let Some(object) = raw_at(text, path) else {
        return Ok(None);
    };
    money_in(object.get(), currency_keys)
}

/// Like [`money_at`] for the price object's own text.
pub fn money_in(object: &str, currency_keys: &[&str]) -> Result<Option<Money>, String> {
    money_in_field(object, "value", currency_keys)
}

/// Like [`money_in`] with the amount under `value_key` (the API's `hotmart_fee.total`).
pub fn money_in_field(
    object: &str,
    value_key: &str,
    currency_keys: &[&str],
) -> Result<Option<Money>, String> {
    let Some(value) = raw_at(object, &[value_key]).and_then(decimal_text) else {
        return Ok(None);
    };
    let Some(currency) = currency_keys.iter().find_map(|k| {
        raw_at(object, &[k]).and_then(|r| serde_json::from_str::<String>(r.get()).ok())
    }) else {
        return Ok(None);
    };
    let code = currency_code(&currency).map_err(|e| format!("currency {currency:?}: {e:?}"))?;
    // More places than the currency's exponent (Hotmart's CLP): rounded, exact text kept.
    money_from_decimal_str(&value, &code)
        .map(Some)
        .map_err(|e| format!("amount {value} {code}: {e:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brl(amount_minor: i64) -> Option<Money> {
        Some(Money {
            amount_minor,
            currency: "BRL".into(),
            exact: None,
        })
    }

    #[test]
    fn reads_number_text_exactly() {
        let body = r#"{"p":{"a":{"value":1500.0,"currency_value":"BRL"},"b":{"value":97.9,"currency_value":"brl"},"c":{"value":1500,"currency_code":"BRL"},"d":{"value":"64.90","currency_value":"BRL"},"e":{"value":0.1,"currency_value":"BRL"}}}"#;
        let cv = ["currency_value", "currency_code"];
        assert_eq!(money_at(body, &["p", "a"], &cv).unwrap(), brl(150000));
        assert_eq!(money_at(body, &["p", "b"], &cv).unwrap(), brl(9790));
        assert_eq!(money_at(body, &["p", "c"], &cv).unwrap(), brl(150000));
        assert_eq!(money_at(body, &["p", "d"], &cv).unwrap(), brl(6490));
        assert_eq!(money_at(body, &["p", "e"], &cv).unwrap(), brl(10));
        assert_eq!(money_at(body, &["p", "x"], &cv).unwrap(), None);
    }

    #[test]
    fn uses_each_currencys_exponent() {
        let jpy = r#"{"value":1500,"currency_code":"JPY"}"#;
        assert_eq!(
            money_in(jpy, &["currency_code"])
                .unwrap()
                .unwrap()
                .amount_minor,
            1500
        );
        let bhd = r#"{"value":1.234,"currency_code":"BHD"}"#;
        assert_eq!(
            money_in(bhd, &["currency_code"])
                .unwrap()
                .unwrap()
                .amount_minor,
            1234
        );
        let jpy = money_in(r#"{"value":1.5,"currency_code":"JPY"}"#, &["currency_code"]);
        let jpy = jpy.unwrap().unwrap();
        assert_eq!((jpy.amount_minor, jpy.exact.as_deref()), (2, Some("1.5")));
        assert!(money_in(r#"{"value":1e3,"currency_code":"BRL"}"#, &["currency_code"]).is_err());
        assert!(money_in(r#"{"value":1,"currency_code":"XYZ"}"#, &["currency_code"]).is_err());
        assert_eq!(
            money_in(
                r#"{"value":null,"currency_code":"BRL"}"#,
                &["currency_code"]
            )
            .unwrap(),
            None
        );
        assert_eq!(
            money_in(r#"{"value":1}"#, &["currency_code"]).unwrap(),
            None
        );
    }

    #[test]
    fn lists_and_paths() {
        let body = r#"{"a":[{"v":1},{"v":2.50}],"s":"x"}"#;
        let items = raw_list_at(body, &["a"]);
        assert_eq!(items.len(), 2);
        assert_eq!(raw_at(items[1].get(), &["v"]).unwrap().get(), "2.50");
        assert!(raw_list_at(body, &["s"]).is_empty());
        assert!(raw_at(body, &["s", "t"]).is_none());
    }
}
