//! Where each secret may be sent.
//!
//! A driver declares, with each secret, the origins the host may send it to (`sent-to`)
//! and, if the secret goes in a header of its own, that header's name. The host checks
//! both on every injection — a `bearer` or `basic` credential, a `header` credential, a
//! `form` value — so a driver that may reach several origins (every shop under
//! `https://*.myshopify.com`, say, or an origin the operator granted for something else)
//! cannot send an installation's token anywhere but where it belongs.
//!
//! `sent-to` entries are origin patterns in which `{setting}` stands for the
//! installation's value of that string setting (`https://{shop}`), or exactly `{setting}`
//! for a URL setting, whose origin is taken (`{api_base}`: a fake or sandbox base the
//! operator configured, which the policy must still grant). An entry naming a setting the
//! installation does not have is skipped. No entries: the secret never leaves the host
//! (a webhook signing secret).

use crate::net::OriginPattern;

/// Where one secret may go, parsed from its `secret-spec`.
#[derive(Debug, Clone, Default)]
pub struct SecretBinding {
    sent_to: Vec<Destination>,
    header: Option<String>,
}

#[derive(Debug, Clone)]
enum Destination {
    /// A pattern, possibly with `{setting}` placeholders.
    Pattern(String),
    /// The origin of the URL in this setting.
    SettingUrl(String),
}

impl SecretBinding {
    /// Parse a secret's `sent-to` and `header`. `settings` names the properties of the
    /// driver's settings schema: a placeholder must be one of them.
    pub fn parse(
        secret: &str,
        sent_to: &[String],
        header: Option<&str>,
        settings: &[&str],
    ) -> Result<Self, String> {
        let mut destinations = Vec::with_capacity(sent_to.len());
        for entry in sent_to {
            let names = placeholders(entry)
                .map_err(|e| format!("secret {secret:?} sent-to {entry:?}: {e}"))?;
            for name in &names {
                if !settings.contains(&name.as_str()) {
                    return Err(format!(
                        "secret {secret:?} sent-to {entry:?}: {{{name}}} is not a settings property"
                    ));
                }
            }
            if let [name] = names.as_slice()
                && *entry == format!("{{{name}}}")
            {
                destinations.push(Destination::SettingUrl(name.clone()));
                continue;
            }
            // Check the shape with every placeholder standing for a plain host name.
            let sample = names.iter().fold(entry.clone(), |text, name| {
                text.replace(&format!("{{{name}}}"), "setting.invalid")
            });
            OriginPattern::parse(&sample)
                .map_err(|e| format!("secret {secret:?} sent-to {entry:?}: {e}"))?;
            destinations.push(Destination::Pattern(entry.clone()));
        }
        if let Some(name) = header {
            let valid = reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_ok();
            if !valid || name.eq_ignore_ascii_case("host") || name.eq_ignore_ascii_case("cookie") {
                return Err(format!(
                    "secret {secret:?}: {name:?} cannot carry a credential"
                ));
            }
        }
        Ok(Self {
            sent_to: destinations,
            header: header.map(str::to_ascii_lowercase),
        })
    }

    /// Whether the secret may be sent to `url` for an installation with `settings`.
    pub fn allows(&self, url: &url::Url, settings: &serde_json::Value) -> bool {
        self.sent_to.iter().any(|d| match d {
            Destination::SettingUrl(name) => settings
                .get(name)
                .and_then(|v| v.as_str())
                .and_then(|v| url::Url::parse(v).ok())
                .is_some_and(|base| base.origin() == url.origin()),
            Destination::Pattern(pattern) => {
                substitute(pattern, settings).is_some_and(|p| p.matches(url))
            }
        })
    }

    /// The one header it may be sent in, when it declares one.
    pub fn header(&self) -> Option<&str> {
        self.header.as_deref()
    }

    /// Whether the secret may be sent in the header `name` (a `header` credential).
    pub fn allows_header(&self, name: &str) -> bool {
        self.header
            .as_deref()
            .is_some_and(|h| h.eq_ignore_ascii_case(name))
    }

    /// Whether the secret may ever leave the host.
    pub fn is_sent_anywhere(&self) -> bool {
        !self.sent_to.is_empty()
    }
}

/// The `{name}` placeholders of `entry`, in order.
fn placeholders(entry: &str) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    let mut rest = entry;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        let end = after.find('}').ok_or("unclosed `{`")?;
        let name = &after[..end];
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(format!("{{{name}}} is not a setting name"));
        }
        names.push(name.to_string());
        rest = &after[end + 1..];
    }
    if rest.contains('}') {
        return Err("unmatched `}`".into());
    }
    Ok(names)
}

/// `pattern` with its placeholders replaced by the settings' values, parsed; `None` when a
/// setting is missing or its value is not a plain host name (it may not widen the pattern).
fn substitute(pattern: &str, settings: &serde_json::Value) -> Option<OriginPattern> {
    let mut text = pattern.to_string();
    for name in placeholders(pattern).ok()? {
        let value = settings.get(&name)?.as_str()?;
        let plain = !value.is_empty()
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
        if !plain {
            return None;
        }
        text = text.replace(&format!("{{{name}}}"), value);
    }
    OriginPattern::parse(&text).ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn url(s: &str) -> url::Url {
        url::Url::parse(s).unwrap()
    }

    fn binding(sent_to: &[&str], header: Option<&str>) -> SecretBinding {
        let sent_to: Vec<String> = sent_to.iter().map(|s| s.to_string()).collect();
        SecretBinding::parse("s", &sent_to, header, &["shop", "api_base"]).unwrap()
    }

    #[test]
    fn a_shop_token_goes_to_its_own_shop_only() {
        let token = binding(
            &["https://{shop}", "{api_base}"],
            Some("X-Shopify-Access-Token"),
        );
        let shop = json!({"shop": "shop-1.myshopify.com"});
        assert!(token.allows(&url("https://shop-1.myshopify.com/admin/api/x"), &shop));
        assert!(!token.allows(&url("https://shop-2.myshopify.com/admin/api/x"), &shop));
        assert!(!token.allows(&url("http://shop-1.myshopify.com/"), &shop));
        assert!(!token.allows(&url("https://collector.example/"), &shop));
        // An api_base override is followed, by origin.
        let fake = json!({"shop": "shop-1.myshopify.com", "api_base": "http://127.0.0.1:4010/v1"});
        assert!(token.allows(&url("http://127.0.0.1:4010/admin"), &fake));
        assert!(!token.allows(&url("http://127.0.0.1:4011/admin"), &fake));
        // A setting value cannot widen the pattern.
        for shop in ["*.myshopify.com", "a.test/x", "a.test:1", "", "a@b"] {
            let settings = json!({ "shop": shop });
            assert!(!token.allows(&url("https://a.test/"), &settings), "{shop}");
            assert!(
                !token.allows(&url("https://x.myshopify.com/"), &settings),
                "{shop}"
            );
        }
        assert!(token.allows_header("x-shopify-access-token"));
        assert!(!token.allows_header("authorization"));
    }

    #[test]
    fn a_secret_with_no_destinations_never_leaves() {
        let secret = binding(&[], None);
        assert!(!secret.is_sent_anywhere());
        assert!(!secret.allows(&url("https://api.stripe.com/"), &json!({})));
        assert!(!secret.allows_header("x-anything"));
    }

    #[test]
    fn bad_declarations_are_refused() {
        let parse = |sent_to: &str, header: Option<&str>| {
            SecretBinding::parse("s", &[sent_to.to_string()], header, &["shop"])
        };
        assert!(parse("https://{shop}", None).is_ok());
        assert!(
            parse("https://{nope}", None)
                .unwrap_err()
                .contains("not a settings property")
        );
        assert!(parse("https://{shop", None).is_err());
        assert!(parse("https://*.com", None).is_err());
        assert!(parse("https://{shop}/path", None).is_err());
        assert!(parse("https://{Shop}", None).is_err());
        assert!(parse("https://{shop}", Some("bad header")).is_err());
        assert!(parse("https://{shop}", Some("Host")).is_err());
    }
}
