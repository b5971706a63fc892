//! A driver's outbound request, as any bytes, through the HTTP capability's conversion:
//! the secrets it names checked against their bindings, its headers, the credential
//! injected, and a response's headers handed back. Anything may be refused; nothing may
//! panic, and a request that is built carries no header the host keeps for itself and at
//! most one `Authorization`.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use sluice::capabilities::SecretValue;
use sluice::capabilities::credentials::SecretBinding;
use sluice::capabilities::http::request::{assemble, headers, response_headers, secret_uses};
use sluice::wit::http::{
    BasicCredential, Body, Capture, Credential, HeaderCredential, Method, Request, Value,
};

/// Reads the fuzzer's bytes as a request's fields, one after another.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().map_or((0, &[][..]), |(f, r)| (*f, r));
        self.0 = rest;
        first
    }

    /// A length byte, then that many bytes as text (lossy, so any bytes become a string).
    fn text(&mut self) -> String {
        let len = usize::from(self.byte()).min(self.0.len());
        let (taken, rest) = self.0.split_at(len);
        self.0 = rest;
        String::from_utf8_lossy(taken).into_owned()
    }

    /// A secret's name: one of the bound three, or any text.
    fn secret(&mut self) -> String {
        match self.byte() % 4 {
            0 => "header_bound".into(),
            1 => "plain".into(),
            2 => "undeclared".into(),
            _ => self.text(),
        }
    }

    fn value(&mut self) -> Value {
        if self.byte().is_multiple_of(2) {
            Value::Text(self.text())
        } else {
            Value::Secret(self.secret())
        }
    }

    fn request(&mut self) -> Request {
        let method = match self.byte() % 6 {
            0 => Method::Get,
            1 => Method::Head,
            2 => Method::Post,
            3 => Method::Put,
            4 => Method::Patch,
            _ => Method::Delete,
        };
        // Up to 255 headers, some of them repeated many times (the count that once
        // panicked inside `HeaderMap` is refused by count before any is inserted).
        let count = usize::from(self.byte());
        let mut headers = Vec::with_capacity(count);
        for _ in 0..count {
            let (name, value) = (self.text(), self.text());
            let repeat = if self.byte() == 255 { 200 } else { 1 };
            headers.extend(std::iter::repeat_n((name, value), repeat));
        }
        let credential = match self.byte() % 4 {
            0 => None,
            1 => Some(Credential::Bearer(self.secret())),
            2 => Some(Credential::Basic(BasicCredential {
                username: self.value(),
                password: self.value(),
            })),
            _ => Some(Credential::Header(HeaderCredential {
                name: self.text(),
                secret: self.secret(),
            })),
        };
        let body = match self.byte() % 3 {
            0 => Body::Empty,
            1 => Body::Bytes(self.text().into_bytes()),
            _ => Body::Form(
                (0..self.byte() % 8)
                    .map(|_| (self.text(), self.value()))
                    .collect(),
            ),
        };
        let capture = (0..self.byte() % 3)
            .map(|_| Capture {
                pointer: self.text(),
                secret: self.secret(),
            })
            .collect();
        let timeout_ms = match self.byte() {
            0 => None,
            b => Some(u32::from(b) << 24),
        };
        Request {
            method,
            url: "https://api.example.com/x".into(),
            headers,
            body,
            credential,
            capture,
            timeout_ms,
        }
    }
}

const HOST_HEADERS: &[&str] = &[
    "host",
    "connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "keep-alive",
];

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let request = input.request();
    let sent_to = ["https://api.example.com".to_string()];
    let bindings = HashMap::from([
        (
            "header_bound".to_string(),
            SecretBinding::parse("header_bound", &sent_to, Some("X-Api-Key"), &[]).unwrap(),
        ),
        (
            "plain".to_string(),
            SecretBinding::parse("plain", &sent_to, None, &[]).unwrap(),
        ),
    ]);
    let Ok(uses) = secret_uses(&request, &bindings) else {
        return;
    };
    // Whatever the secrets' values are, including bytes no header may hold.
    let resolved: HashMap<String, SecretValue> = uses
        .into_iter()
        .map(|(name, _)| (name, SecretValue::new(input.text().into_bytes())))
        .collect();
    if let Ok(map) = headers(&request.headers) {
        let _ = response_headers(&map);
    }
    let client = reqwest::Client::new();
    let url = url::Url::parse(&request.url).unwrap();
    let Ok(built) = assemble(&client, url, request, &resolved) else {
        return;
    };
    let sent = built.headers();
    for name in HOST_HEADERS {
        assert!(sent.get(*name).is_none(), "the driver set {name}");
    }
    assert!(!sent.keys().any(|k| k.as_str().starts_with("proxy-")));
    assert!(sent.get_all("authorization").iter().count() <= 1);
    assert!(sent.len() <= sluice::capabilities::http::request::MAX_HEADERS + 2);
});
