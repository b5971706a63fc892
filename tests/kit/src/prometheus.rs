//! A parser for the Prometheus text exposition format (0.0.4), so tests read `GET /metrics`
//! by family, label set and value instead of matching substrings.
//!
//! Follows <https://prometheus.io/docs/instrumenting/exposition_formats/>: `# HELP` and
//! `# TYPE` lines, other comments ignored, samples `name{label="value",…} value
//! [timestamp]` with `\\`, `\"` and `\n` escaped in label values (and `\\`, `\n` in help
//! text), values `NaN`, `+Inf`, `-Inf`. Anything else is an error: the exporter's output is
//! checked too.

use std::collections::{BTreeMap, HashMap};

/// One sample line.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed exposition.
#[derive(Clone, Debug, Default)]
pub struct Exposition {
    pub samples: Vec<Sample>,
    help: HashMap<String, String>,
    types: HashMap<String, String>,
}

impl Exposition {
    /// Parse `text`; `Err` names the first line that is not valid.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut out = Self::default();
        for (n, line) in text.lines().enumerate() {
            let fail = |why: &str| format!("line {}: {why}: {line:?}", n + 1);
            let line = line.trim_start();
            if line.is_empty() {
                continue;
            }
            if let Some(comment) = line.strip_prefix('#') {
                let mut words = comment.trim_start().splitn(3, [' ', '\t']);
                match (words.next(), words.next(), words.next()) {
                    (Some("HELP"), Some(name), help) => {
                        out.help
                            .insert(name.into(), unescape_help(help.unwrap_or("")));
                    }
                    (Some("TYPE"), Some(name), Some(kind)) => {
                        let kind = kind.trim();
                        if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind)
                        {
                            return Err(fail("unknown type"));
                        }
                        if out.types.insert(name.into(), kind.into()).is_some() {
                            return Err(fail("a second TYPE line for one family"));
                        }
                    }
                    (Some("TYPE"), ..) => return Err(fail("TYPE without a type")),
                    _ => {}
                }
                continue;
            }
            out.samples.push(sample(line).map_err(|why| fail(&why))?);
        }
        Ok(out)
    }

    /// The value of the sample `name` whose label set is exactly `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == wanted)
            .map(|s| s.value)
    }

    /// The samples `name` that carry every one of `labels` (and maybe others).
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).is_some_and(|x| x == v))
        })
    }

    /// The sum over [`Exposition::matching`] (0 when none match).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }

    /// The family's `# TYPE`.
    pub fn kind(&self, family: &str) -> Option<&str> {
        self.types.get(family).map(String::as_str)
    }

    /// The family's `# HELP` text.
    pub fn help(&self, family: &str) -> Option<&str> {
        self.help.get(family).map(String::as_str)
    }

    /// The family a sample belongs to: its name, or the histogram or summary it is the
    /// `_bucket`, `_sum` or `_count` of.
    pub fn family_of<'a>(&self, sample: &'a str) -> Option<&'a str> {
        if self.types.contains_key(sample) {
            return Some(sample);
        }
        ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
            let family = sample.strip_suffix(suffix)?;
            matches!(self.kind(family), Some("histogram" | "summary")).then_some(family)
        })
    }
}

/// `GET /metrics` of `sluice` with its admin token, parsed (panics unless `200`,
/// `text/plain` and valid).
pub async fn scrape(sluice: &crate::Sluice) -> Exposition {
    let resp = reqwest::Client::new()
        .get(sluice.url("/metrics"))
        .bearer_auth(&sluice.admin_token)
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers()["content-type"]
        .to_str()
        .unwrap_or("")
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = resp.text().await.expect("reading /metrics");
    Exposition::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_ascii_whitespace())
        .ok_or("no value")?;
    let name = &line[..name_end];
    if !valid_name(name) {
        return Err("invalid metric name".into());
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = after;
        loop {
            rest = rest.trim_start();
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = rest.find('=').ok_or("a label without a value")?;
            let key = rest[..eq].trim();
            if !valid_name(key) || key.contains(':') {
                return Err(format!("invalid label name {key:?}"));
            }
            let (value, after) = quoted(rest[eq + 1..].trim_start())?;
            if labels.insert(key.to_string(), value).is_some() {
                return Err(format!("label {key:?} twice"));
            }
            rest = after.trim_start();
            if let Some(after) = rest.strip_prefix(',') {
                rest = after;
            } else if !rest.starts_with('}') {
                return Err("labels must be separated by commas".into());
            }
        }
    }
    let mut fields = rest.split_ascii_whitespace();
    let value = fields.next().ok_or("no value")?;
    let value = match value {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().map_err(|_| format!("invalid value {v:?}"))?,
    };
    if let Some(timestamp) = fields.next() {
        timestamp
            .parse::<i64>()
            .map_err(|_| format!("invalid timestamp {timestamp:?}"))?;
    }
    if fields.next().is_some() {
        return Err("more than a value and a timestamp".into());
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// A double-quoted label value and what follows it.
fn quoted(text: &str) -> Result<(String, &str), String> {
    let body = text
        .strip_prefix('"')
        .ok_or("a label value must be quoted")?;
    let mut value = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &body[i + 1..])),
            '\\' => match chars.next() {
                Some((_, '\\')) => value.push('\\'),
                Some((_, '"')) => value.push('"'),
                Some((_, 'n')) => value.push('\n'),
                other => return Err(format!("invalid escape {other:?}")),
            },
            c => value.push(c),
        }
    }
    Err("an unterminated label value".into())
}

fn unescape_help(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (c, chars.clone().next()) {
            ('\\', Some('\\')) => {
                out.push('\\');
                chars.next();
            }
            ('\\', Some('n')) => {
                out.push('\n');
                chars.next();
            }
            (c, _) => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example exposition in the format's documentation.
    const SPEC_EXAMPLE: &str = r#"# HELP http_requests_total The total number of HTTP requests.
# TYPE http_requests_total counter
http_requests_total{method="post",code="200"} 1027 1395066363000
http_requests_total{method="post",code="400"}    3 1395066363000

# Escaping in label values:
msdos_file_access_time_seconds{path="C:\\DIR\\FILE.TXT",error="Cannot find file:\n\"FILE.TXT\""} 1.458255915e9

# Minimalistic line:
metric_without_timestamp_and_labels 12.47

# A weird metric from before the epoch:
something_weird{problem="division by zero"} +Inf -3982045

# A histogram, which has a pretty complex representation in the text format:
# HELP http_request_duration_seconds A histogram of the request duration.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.05"} 24054
http_request_duration_seconds_bucket{le="0.1"} 33444
http_request_duration_seconds_bucket{le="0.2"} 100392
http_request_duration_seconds_bucket{le="0.5"} 129389
http_request_duration_seconds_bucket{le="1"} 133988
http_request_duration_seconds_bucket{le="+Inf"} 144320
http_request_duration_seconds_sum 53423
http_request_duration_seconds_count 144320

# Finally a summary, which has a complex representation, too:
# HELP rpc_duration_seconds A summary of the RPC duration in seconds.
# TYPE rpc_duration_seconds summary
rpc_duration_seconds{quantile="0.01"} 3102
rpc_duration_seconds{quantile="0.05"} 3272
rpc_duration_seconds{quantile="0.5"} 4773
rpc_duration_seconds{quantile="0.9"} 9001
rpc_duration_seconds{quantile="0.99"} 76656
rpc_duration_seconds_sum 1.7560473e+07
rpc_duration_seconds_count 2693
"#;

    #[test]
    fn the_documented_example_parses() {
        let e = Exposition::parse(SPEC_EXAMPLE).unwrap();
        assert_eq!(e.samples.len(), 20);
        assert_eq!(
            e.value(
                "http_requests_total",
                &[("method", "post"), ("code", "400")]
            ),
            Some(3.0)
        );
        assert_eq!(e.sum("http_requests_total", &[("method", "post")]), 1030.0);
        assert_eq!(e.value("http_requests_total", &[("method", "post")]), None);
        assert_eq!(
            e.value(
                "msdos_file_access_time_seconds",
                &[
                    ("path", r"C:\DIR\FILE.TXT"),
                    ("error", "Cannot find file:\n\"FILE.TXT\"")
                ]
            ),
            Some(1.458255915e9)
        );
        assert_eq!(
            e.value("metric_without_timestamp_and_labels", &[]),
            Some(12.47)
        );
        assert_eq!(
            e.value("something_weird", &[("problem", "division by zero")]),
            Some(f64::INFINITY)
        );
        assert_eq!(
            e.value("http_request_duration_seconds_bucket", &[("le", "+Inf")]),
            Some(144320.0)
        );
        assert_eq!(e.kind("http_request_duration_seconds"), Some("histogram"));
        assert_eq!(
            e.help("http_request_duration_seconds"),
            Some("A histogram of the request duration.")
        );
        assert_eq!(
            e.family_of("rpc_duration_seconds_count"),
            Some("rpc_duration_seconds")
        );
        assert_eq!(e.family_of("something_weird"), None);
        assert_eq!(e.value("rpc_duration_seconds_sum", &[]), Some(1.7560473e7));
    }

    #[test]
    fn malformed_lines_are_errors() {
        for bad in [
            "1metric 1",
            "m{a=\"x\" b=\"y\"} 1",
            "m{a=x} 1",
            "m{a=\"x} 1",
            "m{a=\"\\t\"} 1",
            "m{a=\"x\",a=\"y\"} 1",
            "m",
            "m one",
            "m 1 2 3",
            "m 1 1.5",
            "# TYPE m countr",
        ] {
            assert!(Exposition::parse(bad).is_err(), "{bad}");
        }
        assert!(Exposition::parse("# TYPE m counter\n# TYPE m gauge").is_err());
        // A trailing comma in a label set is allowed.
        let e = Exposition::parse("m{a=\"1\",} 2").unwrap();
        assert_eq!(e.value("m", &[("a", "1")]), Some(2.0));
    }
}
