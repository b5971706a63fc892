//! Pagination and rate-limit helpers for polling provider APIs.

use crate::headers;

/// The URL of the `Link` header entry with `rel="next"` (RFC 8288), as Shopify pages.
pub fn link_next(link_header: &str) -> Option<String> {
    link_header.split(',').find_map(|entry| {
        let (target, params) = entry.trim().split_once(';')?;
        let url = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        params
            .split(';')
            .filter_map(|p| p.trim().split_once('='))
            .any(|(k, v)| {
                k.trim().eq_ignore_ascii_case("rel")
                    && v.trim()
                        .trim_matches('"')
                        .split_whitespace()
                        .any(|r| r == "next")
            })
            .then(|| url.to_string())
    })
}

/// The value of query parameter `name` in `url` (not percent-decoded: cursors are opaque).
pub fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1.split('#').next()?;
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// Milliseconds to wait from a response's `Retry-After` header, if it has one.
pub fn retry_after(response_headers: &[(String, String)]) -> Option<u64> {
    headers::get(response_headers, "retry-after").and_then(crate::error::retry_after_ms)
}

/// Percent-encode a query value (RFC 3986 unreserved characters kept).
pub fn encode_query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decode one component of an `application/x-www-form-urlencoded` query: `+` is a space,
/// `%XX` a byte; a malformed escape is kept as it is, and invalid UTF-8 is replaced.
pub fn decode_query_component(text: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_query_components() {
        assert_eq!(decode_query_component("a+b%20c%3D"), "a b c=");
        assert_eq!(decode_query_component("%4"), "%4");
        assert_eq!(decode_query_component("%zz%41"), "%zzA");
        assert_eq!(decode_query_component("caf%C3%A9"), "café");
    }

    #[test]
    fn finds_next_link_among_others() {
        let h = r#"<https://s.myshopify.com/admin/api/2024-01/orders.json?limit=250&page_info=abc>; rel="previous", <https://s.myshopify.com/admin/api/2024-01/orders.json?limit=250&page_info=def>; rel="next""#;
        let next = link_next(h).unwrap();
        assert!(next.ends_with("page_info=def"));
        assert_eq!(query_param(&next, "page_info").as_deref(), Some("def"));
        assert_eq!(query_param(&next, "limit").as_deref(), Some("250"));
        assert_eq!(link_next(r#"<https://x/a>; rel="previous""#), None);
        assert_eq!(link_next("garbage"), None);
    }

    #[test]
    fn retry_after_reads_fractional_seconds() {
        let h = vec![("Retry-After".to_string(), "2.5".to_string())];
        assert_eq!(retry_after(&h), Some(2500));
        assert_eq!(retry_after(&[]), None);
    }

    #[test]
    fn encodes_query_values() {
        assert_eq!(
            encode_query_value("2024-01-01T00:00:00+00:00"),
            "2024-01-01T00%3A00%3A00%2B00%3A00"
        );
    }
}
