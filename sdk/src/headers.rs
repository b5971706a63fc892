//! Case-insensitive lookup in WIT header lists (`list<tuple<string, string>>`).

/// The value of the first header named `name` (ASCII case-insensitive), if any.
pub fn get<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Every value of the headers named `name` (ASCII case-insensitive), in order.
pub fn get_all<'a>(
    headers: &'a [(String, String)],
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .iter()
        .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn lookup_ignores_case() {
        let hs = h(&[
            ("Content-Type", "a"),
            ("stripe-signature", "t=1"),
            ("X-A", "1"),
            ("x-a", "2"),
        ]);
        assert_eq!(get(&hs, "Stripe-Signature"), Some("t=1"));
        assert_eq!(get(&hs, "CONTENT-TYPE"), Some("a"));
        assert_eq!(get(&hs, "missing"), None);
        assert_eq!(get_all(&hs, "x-A").collect::<Vec<_>>(), ["1", "2"]);
    }
}
