//! Recorded HTTP answers, served to a driver's `http.send` (and key-set fetches) instead of
//! the network: `sluice driver test --fixtures` replays a fixture's responses this way.
//!
//! A request is answered by the first unused recording with the same method and URL (both
//! URLs parsed, so `https://a.test` and `https://a.test/` are one); each recording answers
//! once, so a driver that asks twice (a retry after `401`) needs two. A request with no
//! recording fails with `transport` and is logged as unmatched, which fails the fixture:
//! nothing ever reaches the network.

use std::sync::Mutex;

/// One recorded answer.
#[derive(Debug, Clone)]
pub struct RecordedResponse {
    pub method: String,
    pub url: url::Url,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// One request the driver made, and the status it was answered with (`None`: no
/// recording matched).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    pub method: String,
    pub url: String,
    pub status: Option<u16>,
}

/// The recordings of one fixture run and the requests made so far.
#[derive(Debug, Default)]
pub struct RecordedHttp {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Recordings still to be used, in the fixture's order.
    unused: Vec<Option<RecordedResponse>>,
    log: Vec<Exchange>,
}

impl RecordedHttp {
    pub fn new(responses: Vec<RecordedResponse>) -> Self {
        Self {
            inner: Mutex::new(Inner {
                unused: responses.into_iter().map(Some).collect(),
                log: Vec::new(),
            }),
        }
    }

    /// The answer to `method url`, using up its recording; `None` when none is left.
    pub fn answer(&self, method: &str, url: &url::Url) -> Option<RecordedResponse> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let found = inner.unused.iter_mut().find(|slot| {
            slot.as_ref()
                .is_some_and(|r| r.method.eq_ignore_ascii_case(method) && r.url == *url)
        });
        let response = found.and_then(Option::take);
        inner.log.push(Exchange {
            method: method.to_ascii_uppercase(),
            url: url.to_string(),
            status: response.as_ref().map(|r| r.status),
        });
        response
    }

    /// Every request made, in order.
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .log
            .clone()
    }

    /// The recordings no request used, as `METHOD url`.
    pub fn unused(&self) -> Vec<String> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .unused
            .iter()
            .flatten()
            .map(|r| format!("{} {}", r.method.to_ascii_uppercase(), r.url))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(method: &str, url: &str, status: u16) -> RecordedResponse {
        RecordedResponse {
            method: method.into(),
            url: url::Url::parse(url).unwrap(),
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    #[test]
    fn each_recording_answers_once_in_order_by_method_and_url() {
        let http = RecordedHttp::new(vec![
            recorded("GET", "https://a.test/x?p=1", 401),
            recorded("POST", "https://a.test/x?p=1", 201),
            recorded("GET", "https://a.test/x?p=1", 200),
        ]);
        let url = url::Url::parse("https://a.test/x?p=1").unwrap();
        assert_eq!(http.answer("get", &url).map(|r| r.status), Some(401));
        assert_eq!(http.answer("GET", &url).map(|r| r.status), Some(200));
        assert!(http.answer("GET", &url).is_none());
        // Another query is another URL.
        let other = url::Url::parse("https://a.test/x?p=2").unwrap();
        assert!(http.answer("POST", &other).is_none());
        assert_eq!(http.unused(), vec!["POST https://a.test/x?p=1".to_string()]);
        let statuses: Vec<_> = http.exchanges().iter().map(|e| e.status).collect();
        assert_eq!(statuses, vec![Some(401), Some(200), None, None]);
        assert_eq!(http.exchanges()[0].method, "GET");
    }

    #[test]
    fn an_origin_with_and_without_its_slash_is_one_url() {
        let http = RecordedHttp::new(vec![recorded("GET", "https://a.test", 200)]);
        let url = url::Url::parse("https://a.test/").unwrap();
        assert_eq!(http.answer("GET", &url).map(|r| r.status), Some(200));
    }
}
