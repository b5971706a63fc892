//! Shop domains: `{name}.myshopify.com` (and Shopify's development domain
//! `{name}.myshopify.io`).
//!
//! Policy (the fixtures list two SDKs that differ; this follows shopify-api-ruby's
//! `sanitize_shop_domain`, which is a superset of what shopify-app-js accepts for shops):
//! surrounding blanks, an `http(s)://` scheme and trailing slashes are removed, the text is
//! lower-cased, and the admin URL form `admin.shopify.com/store/{name}` becomes
//! `{name}.myshopify.com`. The name is `[a-z0-9][a-z0-9_-]*`; anything else (other hosts,
//! userinfo, paths, ports, a bare `myshopify.com`) is refused.

/// The domains a shop may live under.
pub const SHOP_SUFFIXES: [&str; 2] = [".myshopify.com", ".myshopify.io"];

fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Normalise a shop domain as described in the module docs; `None` when it is not a shop.
pub fn sanitize(input: &str) -> Option<String> {
    let mut text = input.trim().to_ascii_lowercase();
    for scheme in ["https://", "http://"] {
        if let Some(rest) = text.strip_prefix(scheme) {
            text = rest.to_string();
            break;
        }
    }
    let text = text.trim_end_matches('/');
    if let Some(store) = text.strip_prefix("admin.shopify.com/store/") {
        return valid_name(store).then(|| format!("{store}.myshopify.com"));
    }
    SHOP_SUFFIXES.iter().find_map(|suffix| {
        let name = text.strip_suffix(suffix)?;
        valid_name(name).then(|| text.to_string())
    })
}

/// Whether `domain` is already a normalised shop domain (what the settings must hold and
/// what an OAuth callback's `shop` must be).
pub fn is_canonical(domain: &str) -> bool {
    sanitize(domain).as_deref() == Some(domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basics() {
        assert_eq!(
            sanitize("a.myshopify.com").as_deref(),
            Some("a.myshopify.com")
        );
        assert_eq!(
            sanitize("A_b.MYSHOPIFY.IO/").as_deref(),
            Some("a_b.myshopify.io")
        );
        for bad in [
            "myshopify.com",
            ".myshopify.com",
            "a.b.myshopify.com",
            "a.myshopify.com:443",
            "ftp://a.myshopify.com",
            "a.myshopify.com/admin",
            "admin.shopify.com/store/",
        ] {
            assert_eq!(sanitize(bad), None, "{bad}");
        }
        assert!(is_canonical("shop.myshopify.com"));
        assert!(!is_canonical("Shop.myshopify.com"));
    }
}
