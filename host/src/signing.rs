//! Webhook signature templates: how a provider signs its webhooks, as a driver describes it
//! in its metadata (the WIT `signing-header`), so tools can sign test deliveries the way
//! the provider would (`sluice webhook send`) without knowing the provider.
//!
//! A template is header-value text with placeholders:
//!
//! | placeholder | becomes |
//! |---|---|
//! | `{body}` | the raw request body |
//! | `{timestamp}` | Unix seconds |
//! | `{uuid}` | a random UUID (version 4) |
//! | `{secret}` | the signing secret itself (static tokens, e.g. Hotmart's hottok) |
//! | `{hmac-sha256-hex:…}`, `{hmac-sha256-base64:…}`, `{hmac-sha512-hex:…}`, `{hmac-sha1-base64:…}` | the HMAC, keyed by the signing secret, of the text inside, which may use the placeholders above |
//!
//! `{{` is a literal `{` anywhere and `}}` a literal `}` outside a function (inside one, the
//! first `}` closes it). Templates are parsed when a driver is loaded (`runtime`), so a
//! driver with a malformed one is refused with the reason.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::crypto::{HmacAlgorithm, hmac as compute_hmac};

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template(Vec<Part>);

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Body,
    Timestamp,
    Uuid,
    Secret,
    Hmac {
        algorithm: HmacAlgorithm,
        encoding: Encoding,
        message: Vec<Part>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Encoding {
    Hex,
    Base64,
}

/// What a template is rendered with.
pub struct Inputs<'a> {
    pub body: &'a [u8],
    pub secret: &'a [u8],
    pub timestamp: u64,
}

impl Template {
    /// Parse a template; the error says where it is malformed.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut chars = text.char_indices().peekable();
        let parts = parse_parts(text, &mut chars, false)?;
        Ok(Self(parts))
    }

    /// Render the header value. Header values are text; a template whose output is not
    /// (e.g. a bare `{body}` of binary data) is refused.
    pub fn render(&self, inputs: &Inputs<'_>) -> Result<String, String> {
        let mut out = Vec::new();
        render_parts(&self.0, inputs, &mut out);
        String::from_utf8(out).map_err(|_| "the rendered header value is not text".into())
    }
}

type Chars<'a> = std::iter::Peekable<std::str::CharIndices<'a>>;

fn parse_parts(text: &str, chars: &mut Chars<'_>, nested: bool) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    while let Some((at, c)) = chars.next() {
        match c {
            '{' if chars.peek().is_some_and(|(_, n)| *n == '{') => {
                chars.next();
                literal.push('{');
            }
            '}' if !nested && chars.peek().is_some_and(|(_, n)| *n == '}') => {
                chars.next();
                literal.push('}');
            }
            '}' if nested => {
                if !literal.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut literal)));
                }
                return Ok(parts);
            }
            '}' => return Err(format!("unmatched `}}` at {at} in {text:?}")),
            '{' => {
                if !literal.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut literal)));
                }
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some((_, '}')) => {
                            parts.push(simple(&name).ok_or_else(|| {
                                format!("unknown placeholder {{{name}}} in {text:?}")
                            })?);
                            break;
                        }
                        Some((_, ':')) => {
                            let (algorithm, encoding) = hmac_kind(&name).ok_or_else(|| {
                                format!("unknown function {{{name}:…}} in {text:?}")
                            })?;
                            let message = parse_parts(text, chars, true)?;
                            parts.push(Part::Hmac {
                                algorithm,
                                encoding,
                                message,
                            });
                            break;
                        }
                        Some((_, c)) if c.is_ascii_alphanumeric() || c == '-' => name.push(c),
                        _ => return Err(format!("unclosed placeholder at {at} in {text:?}")),
                    }
                }
            }
            c => literal.push(c),
        }
    }
    if nested {
        return Err(format!("unclosed `{{…:` in {text:?}"));
    }
    if !literal.is_empty() {
        parts.push(Part::Text(literal));
    }
    Ok(parts)
}

fn simple(name: &str) -> Option<Part> {
    Some(match name {
        "body" => Part::Body,
        "timestamp" => Part::Timestamp,
        "uuid" => Part::Uuid,
        "secret" => Part::Secret,
        _ => return None,
    })
}

fn hmac_kind(name: &str) -> Option<(HmacAlgorithm, Encoding)> {
    Some(match name {
        "hmac-sha256-hex" => (HmacAlgorithm::Sha256, Encoding::Hex),
        "hmac-sha256-base64" => (HmacAlgorithm::Sha256, Encoding::Base64),
        "hmac-sha1-base64" => (HmacAlgorithm::Sha1, Encoding::Base64),
        "hmac-sha512-hex" => (HmacAlgorithm::Sha512, Encoding::Hex),
        _ => return None,
    })
}

fn render_parts(parts: &[Part], inputs: &Inputs<'_>, out: &mut Vec<u8>) {
    for part in parts {
        match part {
            Part::Text(t) => out.extend_from_slice(t.as_bytes()),
            Part::Body => out.extend_from_slice(inputs.body),
            Part::Timestamp => out.extend_from_slice(inputs.timestamp.to_string().as_bytes()),
            Part::Uuid => out.extend_from_slice(uuid_v4().as_bytes()),
            Part::Secret => out.extend_from_slice(inputs.secret),
            Part::Hmac {
                algorithm,
                encoding,
                message,
            } => {
                let mut signed = Vec::new();
                render_parts(message, inputs, &mut signed);
                let mac = compute_hmac(*algorithm, inputs.secret, &signed);
                let text = match encoding {
                    Encoding::Hex => hex::encode(mac),
                    Encoding::Base64 => STANDARD.encode(mac),
                };
                out.extend_from_slice(text.as_bytes());
            }
        }
    }
}

fn uuid_v4() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(template: &str, body: &[u8], secret: &str, timestamp: u64) -> String {
        Template::parse(template)
            .unwrap()
            .render(&Inputs {
                body,
                secret: secret.as_bytes(),
                timestamp,
            })
            .unwrap()
    }

    #[test]
    fn stripe_template_reproduces_the_stripe_dotnet_vector() {
        // tests/fixtures/stripe/stripe_webhook_cases.json, "stripe-dotnet/EventUtilityTest":
        // the fixture body, secret `webhook_secret`, t=1533204620.
        let body =
            include_bytes!("../../tests/fixtures/stripe/stripe_dotnet_event_test_signature.json");
        let header = render(
            "t={timestamp},v1={hmac-sha256-hex:{timestamp}.{body}}",
            body,
            "webhook_secret",
            1_533_204_620,
        );
        assert_eq!(
            header,
            "t=1533204620,v1=2220f87ef101a04665f11cdf770523143f875572008577fa0f20882ddb9cc3c7"
        );
    }

    #[test]
    fn shopify_template_reproduces_the_official_vector() {
        // tests/fixtures/shopify/shopify_hmac_cases.json: shopify-app-js webhook vector.
        let cases: serde_json::Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/shopify/shopify_hmac_cases.json"
        ))
        .unwrap();
        let case = &cases["webhook_hmac"]["official_verbatim"][0];
        let body = case["raw_body"].as_str().unwrap();
        let secret = case["secret"].as_str().unwrap();
        let expected = case["headers"]["X-Shopify-Hmac-Sha256"].as_str().unwrap();
        assert_eq!(
            render("{hmac-sha256-base64:{body}}", body.as_bytes(), secret, 0),
            expected
        );
    }

    #[test]
    fn tokens_uuids_and_escapes() {
        assert_eq!(render("{secret}", b"", "hottok", 0), "hottok");
        assert_eq!(render("{{literal}}", b"", "s", 0), "{literal}");
        let uuid = render("{uuid}", b"", "s", 0);
        assert_eq!(uuid.len(), 36);
        assert_eq!(&uuid[14..15], "4");
    }

    #[test]
    fn malformed_templates_are_refused() {
        for bad in [
            "{nope}",
            "{hmac-md5-hex:{body}}",
            "{hmac-sha256-hex:{body}",
            "t={timestamp",
            "}",
            "{body",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad:?}");
        }
    }
}
