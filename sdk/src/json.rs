//! Reading optional fields from a `serde_json::Value` without panics.
//!
//! Ids stay exact: a string id is returned as is, an integer id as its decimal text (serde_json
//! keeps every integer within `i64`/`u64` exactly); a number with a fraction or exponent, or
//! an integer beyond `u64`, is not a usable id and gives `None` — never a float rendering.

pub use serde_json::{self, Value};

/// The value at `path` (object keys), if every step exists.
pub fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, key| cur.get(key))
}

/// The string at `path` (object keys), owned; `None` when a step is missing or the value is
/// not a string.
pub fn string_at(v: &Value, path: &[&str]) -> Option<String> {
    at(v, path)?.as_str().map(str::to_owned)
}

/// A string field (`None` when missing, `null` or not a string).
pub fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key)?.as_str()
}

/// A string field as an owned, non-empty `String`.
pub fn string_field(v: &Value, key: &str) -> Option<String> {
    str_field(v, key)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// An integer field that fits an `i64` (floats and integer strings give `None`).
pub fn i64_field(v: &Value, key: &str) -> Option<i64> {
    v.get(key)?.as_i64()
}

/// A non-negative integer field that fits a `u64`.
pub fn u64_field(v: &Value, key: &str) -> Option<u64> {
    v.get(key)?.as_u64()
}

/// A boolean field.
pub fn bool_field(v: &Value, key: &str) -> Option<bool> {
    v.get(key)?.as_bool()
}

/// An id given as a string or an integer, as exact text; see the module docs.
pub fn id_value(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

/// An id field given as a string or an integer, as exact text.
pub fn id_field(v: &Value, key: &str) -> Option<String> {
    id_value(v.get(key)?)
}

/// The id of a field that is either an id or an expanded object carrying `id`
/// (Stripe's expandable fields: `"customer": "cus_1"` or `"customer": {"id": "cus_1", …}`).
pub fn expandable_id(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        obj @ Value::Object(_) => id_field(obj, "id"),
        other => id_value(other),
    }
}

/// An object's entries as text pairs: strings as is, other scalars and nested values as their
/// JSON text, `null` skipped. Anything that is not an object gives an empty list.
pub fn string_pairs(v: Option<&Value>) -> Vec<(String, String)> {
    let Some(Value::Object(map)) = v else {
        return Vec::new();
    };
    map.iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), text)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields() {
        let v = json!({"a": "x", "n": 5, "neg": -5, "f": 1.5, "b": true, "nul": null, "o": {"p": {"q": 1}}, "e": ""});
        assert_eq!(str_field(&v, "a"), Some("x"));
        assert_eq!(str_field(&v, "n"), None);
        assert_eq!(string_field(&v, "e"), None);
        assert_eq!(i64_field(&v, "neg"), Some(-5));
        assert_eq!(i64_field(&v, "f"), None);
        assert_eq!(u64_field(&v, "neg"), None);
        assert_eq!(bool_field(&v, "b"), Some(true));
        assert_eq!(str_field(&v, "nul"), None);
        assert_eq!(at(&v, &["o", "p", "q"]), Some(&json!(1)));
        assert_eq!(at(&v, &["o", "x", "q"]), None);
    }

    #[test]
    fn ids_are_exact() {
        let v: Value =
            serde_json::from_str(r#"{"big": 18446744073709551615, "big2": 9007199254740993, "s": "ch_1", "f": 1.0, "huge": 123456789012345678901234567890, "neg": -9007199254740993}"#)
                .unwrap();
        assert_eq!(id_field(&v, "big").as_deref(), Some("18446744073709551615"));
        assert_eq!(id_field(&v, "big2").as_deref(), Some("9007199254740993"));
        assert_eq!(id_field(&v, "neg").as_deref(), Some("-9007199254740993"));
        assert_eq!(id_field(&v, "s").as_deref(), Some("ch_1"));
        assert_eq!(id_field(&v, "f"), None);
        assert_eq!(id_field(&v, "huge"), None);
        assert_eq!(id_field(&v, "missing"), None);
    }

    #[test]
    fn expandable_and_pairs() {
        let v = json!({"c": "cus_1", "d": {"id": "cus_2", "object": "customer"}, "m": {"k": "v", "n": 1, "z": null}});
        assert_eq!(expandable_id(&v, "c").as_deref(), Some("cus_1"));
        assert_eq!(expandable_id(&v, "d").as_deref(), Some("cus_2"));
        assert_eq!(
            string_pairs(v.get("m")),
            vec![
                ("k".to_string(), "v".to_string()),
                ("n".to_string(), "1".to_string())
            ]
        );
        assert!(string_pairs(v.get("c")).is_empty());
        assert!(string_pairs(None).is_empty());
    }
}
