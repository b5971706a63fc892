//! `secrets.verify-jwt-jwks`: JSON Web Key Sets fetched under the driver's network grants
//! and cached process-wide.
//!
//! The key set's URL is checked exactly as an `http.send` to it would be (declared and
//! granted origins, global addresses, no redirects, no environment proxy) and fetched
//! without credentials. A set is kept for [`FRESH_FOR`]; a token naming a key id the set
//! lacks fetches it again once [`REFETCH_AFTER`] has passed since the last fetch, so a
//! provider's key rotation is picked up while a flood of tokens with made-up key ids
//! cannot turn into a flood of fetches.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::capabilities::CallState;
use crate::capabilities::jwt::{JwksFailure, KeySet};
use crate::wit::secrets::JwksError;

/// How long a fetched set is used without asking again.
const FRESH_FOR: Duration = Duration::from_secs(600);
/// Shortest time between two fetches of one set.
const REFETCH_AFTER: Duration = Duration::from_secs(60);
/// Longest a fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest key set document read.
const MAX_DOCUMENT: usize = 64 * 1024;
/// Most sets cached at once; the oldest is dropped to make room.
const MAX_SETS: usize = 256;

/// The key sets fetched so far, by URL.
#[derive(Default)]
pub struct KeySetCache {
    sets: Mutex<HashMap<String, Cached>>,
}

struct Cached {
    keys: Arc<KeySet>,
    fetched: Instant,
}

impl KeySetCache {
    fn get(&self, url: &str) -> Option<(Arc<KeySet>, Duration)> {
        let sets = self.sets.lock().unwrap_or_else(|p| p.into_inner());
        sets.get(url).map(|c| (c.keys.clone(), c.fetched.elapsed()))
    }

    fn put(&self, url: &str, keys: Arc<KeySet>) {
        let mut sets = self.sets.lock().unwrap_or_else(|p| p.into_inner());
        if sets.len() >= MAX_SETS
            && !sets.contains_key(url)
            && let Some(oldest) = sets
                .iter()
                .min_by_key(|(_, c)| c.fetched)
                .map(|(k, _)| k.clone())
        {
            sets.remove(&oldest);
        }
        sets.insert(
            url.to_string(),
            Cached {
                keys,
                fetched: Instant::now(),
            },
        );
    }
}

/// The key id a token's header names, if it can be read (the signature is checked later).
fn token_kid(token: &str) -> Option<String> {
    use base64::Engine as _;
    let header = token.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    value.get("kid")?.as_str().map(str::to_string)
}

/// Whether to fetch the set again, given the cached one (if any) with its age and the key
/// id the token names.
fn needs_fetch(cached: Option<(&KeySet, Duration)>, kid: Option<&str>) -> bool {
    match cached {
        None => true,
        Some((_, age)) if age >= FRESH_FOR => true,
        Some((keys, age)) => age >= REFETCH_AFTER && kid.is_some_and(|kid| !keys.has_kid(kid)),
    }
}

impl CallState {
    /// The `verify-jwt-jwks` import.
    pub(crate) async fn check_jwt_with_key_set(
        &mut self,
        jwks_url: &str,
        token: &str,
    ) -> Result<String, JwksError> {
        let url = url::Url::parse(jwks_url)
            .map_err(|e| JwksError::Denied(format!("bad key set URL: {e}")))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(JwksError::Denied("credentials in the key set URL".into()));
        }
        let route = self.caps.http.check(&url).map_err(|e| {
            use crate::wit::http::Error as E;
            JwksError::Denied(match e {
                E::Denied(m) | E::InvalidRequest(m) => m,
                other => format!("{other:?}"),
            })
        })?;
        let now = i64::try_from(self.caps.clock.now().as_secs()).unwrap_or(i64::MAX);
        let key = url.as_str().to_string();
        // A replay fetches from its own recordings every time: a set cached by an earlier
        // fixture must not answer for this one.
        let cached = match self.caps.http.recorded() {
            Some(_) => None,
            None => self.caps.http.key_sets().get(&key),
        };
        let refetch = needs_fetch(
            cached.as_ref().map(|(keys, age)| (&**keys, *age)),
            token_kid(token).as_deref(),
        );
        let keys = match (refetch, cached) {
            (false, Some((keys, _))) => keys,
            (_, cached) => match (self.fetch_key_set(&url, route).await, cached) {
                (Ok(keys), _) => keys,
                // A provider's key endpoint having a bad minute does not fail every token
                // while the set fetched before is at hand.
                (Err(JwksError::Unavailable(reason)), Some((keys, _))) => {
                    tracing::warn!(url = %url, %reason, "key set fetch failed; using the cached set");
                    keys
                }
                (Err(e), _) => return Err(e),
            },
        };
        keys.verify(token, now).map_err(|e| match e {
            JwksFailure::NoKey(m) | JwksFailure::Invalid(m) => JwksError::Invalid(m),
        })
    }

    async fn fetch_key_set(
        &mut self,
        url: &url::Url,
        route: super::Route,
    ) -> Result<Arc<KeySet>, JwksError> {
        if !self.caps.http.spend_request() {
            return Err(JwksError::Denied(
                "outbound request budget for this call is spent".into(),
            ));
        }
        let unavailable = |m: String| JwksError::Unavailable(format!("key set {url}: {m}"));
        if let Some(recorded) = self.caps.http.recorded() {
            let answer = recorded
                .answer("GET", url)
                .ok_or_else(|| unavailable("no recorded response".into()))?;
            if answer.status != 200 {
                return Err(unavailable(format!("answered {}", answer.status)));
            }
            if answer.body.len() > MAX_DOCUMENT {
                return Err(unavailable(format!("over {MAX_DOCUMENT} bytes")));
            }
            return Ok(Arc::new(KeySet::parse(&answer.body).map_err(unavailable)?));
        }
        let client = self.caps.http.client(route);
        let mut response = client
            .get(url.clone())
            .header("accept", "application/json")
            .timeout(FETCH_TIMEOUT)
            .send()
            .await
            .map_err(|e| unavailable(format!("{e:#}")))?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(unavailable(format!("answered {}", response.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| unavailable(format!("{e:#}")))?
        {
            if body.len() + chunk.len() > MAX_DOCUMENT {
                return Err(unavailable(format!("over {MAX_DOCUMENT} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        let keys = Arc::new(KeySet::parse(&body).map_err(unavailable)?);
        self.caps.http.key_sets().put(url.as_str(), keys.clone());
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_is_fetched_again_when_stale_or_rotated_but_not_more_than_once_a_minute() {
        let keys = KeySet::parse(
            br#"{"keys":[{"kty":"EC","kid":"k1","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#,
        )
        .unwrap();
        let secs = Duration::from_secs;
        assert!(needs_fetch(None, Some("k1")));
        assert!(!needs_fetch(Some((&keys, secs(0))), Some("k1")));
        assert!(!needs_fetch(Some((&keys, secs(599))), None));
        assert!(needs_fetch(Some((&keys, secs(600))), Some("k1")));
        // An unknown key id: only once the last fetch is a minute old.
        assert!(!needs_fetch(Some((&keys, secs(59))), Some("k2")));
        assert!(needs_fetch(Some((&keys, secs(60))), Some("k2")));
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = KeySetCache::default();
        let keys = Arc::new(
            KeySet::parse(
                br#"{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#,
            )
            .unwrap(),
        );
        for i in 0..MAX_SETS + 10 {
            cache.put(&format!("https://keys.example.com/{i}"), keys.clone());
        }
        let sets = cache.sets.lock().unwrap();
        assert_eq!(sets.len(), MAX_SETS);
        assert!(sets.contains_key(&format!("https://keys.example.com/{}", MAX_SETS + 9)));
    }
}
