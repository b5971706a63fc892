//! The network policy: which origins outbound requests may reach and which addresses they
//! may connect to.
//!
//! - [`OriginPattern`]: `scheme://host[:port]`, where the host may start with `*.` (at least
//!   two labels after it and not an ICANN public suffix such as `co.uk`, so no pattern
//!   matches a whole top-level domain) and the port may be `*`. A pattern grants exactly the scheme, host and port it names.
//! - [`is_global`]: whether an address is publicly routable. Everything else — private,
//!   loopback, link-local, shared, documentation, benchmarking, multicast, reserved — is
//!   refused, including IPv4 addresses embedded in IPv6 forms (mapped, compatible, NAT64,
//!   6to4, Teredo).
//! - [`GlobalOnlyResolver`]: DNS resolution that drops non-global answers unless the name
//!   is in an operator grant that allows private destinations. The HTTP capability uses
//!   one resolver that never allows them, and reaches operator-granted origins through a
//!   second client whose resolver does, so a grant is trusted only for its own origin.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// An origin pattern, parsed and validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPattern {
    scheme: String,
    host: HostPart,
    /// `None` is `*`: any port.
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPart {
    /// A name or an IP literal (IPv6 without brackets), lower case.
    Exact(String),
    /// `*.suffix`: any name with at least one more label before `suffix`.
    Subdomains(String),
}

impl OriginPattern {
    /// Parse `scheme://host[:port]`.
    pub fn parse(pattern: &str) -> Result<Self, String> {
        let (scheme, rest) = pattern
            .split_once("://")
            .ok_or_else(|| format!("{pattern:?} needs a scheme, e.g. https://api.example.com"))?;
        if scheme != "http" && scheme != "https" {
            return Err(format!("{pattern:?}: only http and https are supported"));
        }
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
            return Err(format!(
                "{pattern:?}: give an origin, without a path or user"
            ));
        }
        let (host, port) = match rest.strip_prefix('[') {
            Some(v6) => {
                let (host, after) = v6
                    .split_once(']')
                    .ok_or_else(|| format!("{pattern:?}: unclosed `[`"))?;
                host.parse::<Ipv6Addr>()
                    .map_err(|_| format!("{pattern:?}: {host:?} is not an IPv6 address"))?;
                match after {
                    "" => (host, None),
                    _ => (
                        host,
                        Some(
                            after
                                .strip_prefix(':')
                                .ok_or_else(|| format!("{pattern:?}: bad port"))?,
                        ),
                    ),
                }
            }
            None => match rest.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            },
        };
        let port = match port {
            None => Some(default_port(scheme)),
            Some("*") => None,
            Some(p) => Some(
                p.parse()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| format!("{pattern:?}: bad port {p:?}"))?,
            ),
        };
        let host = host.to_ascii_lowercase();
        let host = match host.strip_prefix("*.") {
            Some(suffix) => {
                let labels: Vec<&str> = suffix.split('.').collect();
                if labels.len() < 2 || labels.iter().any(|l| !is_label(l)) {
                    return Err(format!(
                        "{pattern:?}: a wildcard needs a domain of at least two labels after `*.` (e.g. https://*.myshopify.com)"
                    ));
                }
                if is_icann_public_suffix(suffix) {
                    return Err(format!(
                        "{pattern:?}: {suffix:?} is a public suffix, so `*.{suffix}` would match every domain registered under it"
                    ));
                }
                HostPart::Subdomains(suffix.to_string())
            }
            None if host.parse::<IpAddr>().is_ok() => HostPart::Exact(host),
            None if !host.is_empty() && host.split('.').all(is_label) => HostPart::Exact(host),
            None => {
                return Err(format!(
                    "{pattern:?}: {host:?} is not a host name (a wildcard may only be a leading `*.`)"
                ));
            }
        };
        Ok(Self {
            scheme: scheme.to_string(),
            host,
            port,
        })
    }

    /// Whether `url`'s scheme, host and port are granted by this pattern.
    pub fn matches(&self, url: &url::Url) -> bool {
        self.scheme == url.scheme()
            && self.matches_host(&host_of(url))
            && self
                .port
                .is_none_or(|p| Some(p) == url.port_or_known_default())
    }

    /// Whether the host part matches `host` (lower case, IPv6 without brackets).
    pub fn matches_host(&self, host: &str) -> bool {
        match &self.host {
            HostPart::Exact(h) => h == host,
            HostPart::Subdomains(suffix) => host
                .strip_suffix(suffix.as_str())
                .and_then(|prefix| prefix.strip_suffix('.'))
                .is_some_and(|prefix| !prefix.is_empty()),
        }
    }

    /// Whether every URL `other` matches, this pattern matches too.
    pub fn covers(&self, other: &OriginPattern) -> bool {
        let port = match (self.port, other.port) {
            (None, _) => true,
            (Some(a), Some(b)) => a == b,
            (Some(_), None) => false,
        };
        let host = match (&self.host, &other.host) {
            (HostPart::Exact(a), HostPart::Exact(b)) => a == b,
            (HostPart::Exact(_), HostPart::Subdomains(_)) => false,
            (HostPart::Subdomains(_), HostPart::Exact(b)) => self.matches_host(b),
            (HostPart::Subdomains(a), HostPart::Subdomains(b)) => {
                a == b || b.strip_suffix(a.as_str()).is_some_and(|p| p.ends_with('.'))
            }
        };
        self.scheme == other.scheme && port && host
    }

    /// Whether this pattern names one exact host (no wildcard).
    pub fn is_exact(&self) -> bool {
        matches!(self.host, HostPart::Exact(_))
    }
}

impl std::fmt::Display for OriginPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = match &self.host {
            HostPart::Exact(h) if h.contains(':') => format!("[{h}]"),
            HostPart::Exact(h) => h.clone(),
            HostPart::Subdomains(s) => format!("*.{s}"),
        };
        match self.port {
            Some(p) if p == default_port(&self.scheme) => write!(f, "{}://{host}", self.scheme),
            Some(p) => write!(f, "{}://{host}:{p}", self.scheme),
            None => write!(f, "{}://{host}:*", self.scheme),
        }
    }
}

fn is_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `name` is itself a suffix under which the public registers domains, per the
/// ICANN section of the public suffix list (`co.uk`, `com.br`, `k12.ca.us`). The private
/// section (`myshopify.com`, `github.io`) is not refused: providers give each tenant a name
/// under one of those, and a driver's bundled policy narrows such a wildcard to the
/// installation's own name.
fn is_icann_public_suffix(name: &str) -> bool {
    psl::suffix(name.as_bytes()).is_some_and(|suffix| {
        suffix.typ() == Some(psl::Type::Icann) && suffix.as_bytes().len() == name.len()
    })
}

fn default_port(scheme: &str) -> u16 {
    if scheme == "https" { 443 } else { 80 }
}

/// The URL's host, lower case, without IPv6 brackets.
pub fn host_of(url: &url::Url) -> String {
    match url.host() {
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Domain(d)) => d.to_ascii_lowercase(),
        None => String::new(),
    }
}

/// Whether `url` names a destination that is not public by its text alone: a non-global
/// IP literal, or `localhost` (and its subdomains).
pub fn is_non_global_literal(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => !is_global(ip.into()),
        Some(url::Host::Ipv6(ip)) => !is_global(ip.into()),
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        None => true,
    }
}

/// Whether an address is publicly routable. Non-global addresses are refused for outbound
/// requests unless an operator grant names the origin.
pub fn is_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_global_v4(v4),
        IpAddr::V6(v6) => is_global_v6(v6),
    }
}

fn is_global_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let special = a == 0 // "this network" 0.0.0.0/8
        || a == 10
        || a == 127
        || (a == 100 && (b & 0xc0) == 64) // shared address space 100.64/10
        || (a == 169 && b == 254)
        || (a == 172 && (b & 0xf0) == 16)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments 192.0.0/24
        || (a == 192 && b == 0 && c == 2) // TEST-NET-1
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast
        || (a == 192 && b == 168)
        || (a == 198 && (b & 0xfe) == 18) // benchmarking 198.18/15
        || (a == 198 && b == 51 && c == 100) // TEST-NET-2
        || (a == 203 && b == 0 && c == 113) // TEST-NET-3
        || a >= 224; // multicast 224/4, reserved 240/4, broadcast
    !special
}

fn is_global_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    // IPv4-mapped ::ffff:a.b.c.d: the IPv4 rules decide.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_global_v4(v4);
    }
    // NAT64 well-known prefix 64:ff9b::/96 carries an IPv4 address; judge that address.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_global_v4(embedded_v4(s[6], s[7]));
    }
    // 6to4 2002:AABB:CCDD::/48 carries an IPv4 address in the next 32 bits.
    if s[0] == 0x2002 {
        return is_global_v4(embedded_v4(s[1], s[2]));
    }
    // Only global unicast 2000::/3 can be public. That excludes ::/8 (unspecified,
    // loopback, IPv4-compatible), 64:ff9b:1::/48 local-use NAT64, 100::/64 discard,
    // fc00::/7 unique local, fe80::/10 link local, fec0::/10 site local and ff00::/8
    // multicast.
    if (s[0] & 0xe000) != 0x2000 {
        return false;
    }
    // IETF protocol assignments 2001::/23 (Teredo 2001::/32, ORCHID, benchmarking),
    // documentation 2001:db8::/32 and 3fff::/20.
    let special =
        (s[0] == 0x2001 && (s[1] < 0x0200 || s[1] == 0x0db8)) || (s[0] == 0x3fff && s[1] < 0x1000);
    !special
}

fn embedded_v4(high: u16, low: u16) -> Ipv4Addr {
    let [a, b] = high.to_be_bytes();
    let [c, d] = low.to_be_bytes();
    Ipv4Addr::new(a, b, c, d)
}

/// Resolves names with the system resolver, keeping only global addresses — unless the name
/// is the host of one of `trusted` (the operator's grants, for the client that only carries
/// requests to granted origins).
pub struct GlobalOnlyResolver {
    trusted: Arc<[OriginPattern]>,
}

impl GlobalOnlyResolver {
    /// A resolver that never returns non-global addresses.
    pub fn strict() -> Self {
        Self {
            trusted: Arc::from(Vec::new()),
        }
    }

    /// A resolver that returns any address for the hosts of `trusted`.
    pub fn trusting(trusted: Arc<[OriginPattern]>) -> Self {
        Self { trusted }
    }
}

impl Resolve for GlobalOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().trim_end_matches('.').to_ascii_lowercase();
        let trusted = self.trusted.iter().any(|g| g.matches_host(&host));
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| trusted || is_global(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> url::Url {
        url::Url::parse(s).unwrap()
    }

    #[test]
    fn patterns_grant_exactly_their_scheme_host_and_port() {
        let p = OriginPattern::parse("https://api.stripe.com").unwrap();
        assert!(p.matches(&url("https://api.stripe.com/v1/events")));
        assert!(p.matches(&url("https://API.stripe.com:443/")));
        assert!(!p.matches(&url("http://api.stripe.com/")));
        assert!(!p.matches(&url("https://api.stripe.com:8443/")));
        assert!(!p.matches(&url("https://api.stripe.com.evil.test/")));

        let any_port = OriginPattern::parse("http://127.0.0.1:*").unwrap();
        assert!(any_port.matches(&url("http://127.0.0.1:3456/x")));
        assert!(!any_port.matches(&url("https://127.0.0.1:3456/x")));
        assert!(!any_port.matches(&url("http://127.0.0.2:3456/x")));

        let wild = OriginPattern::parse("https://*.myshopify.com").unwrap();
        assert!(wild.matches(&url("https://shop-1.myshopify.com/admin")));
        assert!(wild.matches(&url("https://a.b.myshopify.com/admin")));
        assert!(!wild.matches(&url("https://myshopify.com/")));
        assert!(!wild.matches(&url("https://evilmyshopify.com/")));
        assert!(!wild.matches(&url("http://shop-1.myshopify.com/")));

        let v6 = OriginPattern::parse("http://[::1]:8080").unwrap();
        assert!(v6.matches(&url("http://[::1]:8080/")));
        assert_eq!(v6.to_string(), "http://[::1]:8080");
        assert_eq!(wild.to_string(), "https://*.myshopify.com");
        assert_eq!(any_port.to_string(), "http://127.0.0.1:*");
    }

    #[test]
    fn covering_is_by_scheme_host_and_port() {
        let p = |s: &str| OriginPattern::parse(s).unwrap();
        assert!(p("https://*.myshopify.com").covers(&p("https://a.myshopify.com")));
        assert!(p("https://*.myshopify.com").covers(&p("https://*.eu.myshopify.com")));
        assert!(p("https://*.myshopify.com").covers(&p("https://*.myshopify.com")));
        assert!(!p("https://*.myshopify.com").covers(&p("https://myshopify.com")));
        assert!(!p("https://a.myshopify.com").covers(&p("https://*.myshopify.com")));
        assert!(!p("https://api.stripe.com").covers(&p("http://api.stripe.com")));
        assert!(!p("https://api.stripe.com").covers(&p("https://api.stripe.com:8443")));
        assert!(p("http://127.0.0.1:*").covers(&p("http://127.0.0.1:9000")));
        assert!(!p("http://127.0.0.1:9000").covers(&p("http://127.0.0.1:*")));
    }

    #[test]
    fn wildcards_under_a_registrable_domain_are_accepted() {
        // One label below an ICANN suffix is a registrable domain; the private section of
        // the list (tenant names under a provider's domain) is accepted on purpose.
        for good in [
            "https://*.example.co.uk",
            "https://*.shop.com.br",
            "https://*.myshopify.com",
            "https://*.github.io",
        ] {
            assert!(OriginPattern::parse(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn bad_and_over_broad_patterns_are_refused() {
        for bad in [
            "api.stripe.com",
            "ftp://x",
            "https://a/b",
            "https://a*.b",
            "https://x:port",
            "https://x:0",
            "https://",
            "https://*.",
            "https://*.com",
            "https://*.co.uk",
            "https://*.com.br",
            "https://*.k12.ca.us",
            "https://*.CO.UK",
            "https://*",
            "https://*.*.com",
            "https://user@host",
            "https://[zz]",
            "https://a..b",
        ] {
            assert!(OriginPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn non_global_addresses_are_refused_in_every_form() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "192.0.0.8",
            "192.0.2.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fe80::1",
            "fd00::1",
            "fec0::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1", // IPv4-compatible
            "::8.8.8.8",   // IPv4-compatible: deprecated, never public
            "64:ff9b::127.0.0.1",
            "64:ff9b::a9fe:a9fe", // NAT64 of 169.254.169.254
            "64:ff9b:1::1",
            "2002:7f00:1::1",   // 6to4 of 127.0.0.1
            "2002:c0a8:101::1", // 6to4 of 192.168.1.1
            "2001::1",          // Teredo
            "2001:db8::1",
            "100::1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(!is_global(ip), "{ip} must not be global");
        }
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "100.128.0.1",
            "198.20.0.1",
            "2606:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(is_global(ip), "{ip} is global");
        }
    }

    /// A name that resolves to loopback (here `localhost`, from the system's hosts file)
    /// gets no address from the resolver every non-development request uses, so a granted
    /// name pointed at an internal address is refused after DNS as well as before.
    #[tokio::test]
    async fn names_resolving_to_non_global_addresses_are_refused() {
        use std::str::FromStr;
        let name = Name::from_str("localhost").unwrap();
        let err = match GlobalOnlyResolver::strict().resolve(name).await {
            Ok(addrs) => panic!("resolved to {:?}", addrs.collect::<Vec<_>>()),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("resolves to no public address"), "{err}");
        // The development grant's resolver trusts the hosts it names, and only those.
        let grant: Arc<[OriginPattern]> =
            vec![OriginPattern::parse("http://localhost:*").unwrap()].into();
        let trusting = GlobalOnlyResolver::trusting(grant);
        let addrs: Vec<_> = trusting
            .resolve(Name::from_str("localhost").unwrap())
            .await
            .unwrap()
            .collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()) && !addrs.is_empty());
    }

    #[test]
    fn literals_and_localhost() {
        assert!(is_non_global_literal(&url("http://127.0.0.1/")));
        assert!(is_non_global_literal(&url("http://[::ffff:7f00:1]/")));
        assert!(is_non_global_literal(&url("http://localhost:80/")));
        assert!(is_non_global_literal(&url("http://api.localhost/")));
        assert!(!is_non_global_literal(&url("https://api.stripe.com/")));
        assert!(!is_non_global_literal(&url("http://8.8.8.8/")));
    }
}
