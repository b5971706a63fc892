//! `secrets.verify-jwt-jwks` end to end: the faulty driver in `jwt` mode verifies each
//! delivery's bearer token against a key set served on loopback. Valid ES256 tokens are
//! accepted with their claims; forged, expired and `alg: none` tokens are `401`; the set is
//! fetched once, not per token, and a made-up key id does not fetch it again; a set the
//! driver may not reach, or that cannot be fetched, fails the call without a fetch or a
//! stored event.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use serde_json::json;
use sluice_testkit::{Backend, Sluice};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// RFC 7515 appendix A.3's P-256 key.
const A3_D: &str = "jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI";
const A3_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
const A3_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn rfc_key() -> EcdsaKeyPair {
    let d = URL_SAFE_NO_PAD.decode(A3_D).unwrap();
    let mut point = vec![0x04];
    point.extend(URL_SAFE_NO_PAD.decode(A3_X).unwrap());
    point.extend(URL_SAFE_NO_PAD.decode(A3_Y).unwrap());
    EcdsaKeyPair::from_private_key_and_public_key(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        &d,
        &point,
        &SystemRandom::new(),
    )
    .unwrap()
}

fn other_key() -> EcdsaKeyPair {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap()
}

/// An ES256 token over `claims`, with `kid` in its header.
fn sign(key: &EcdsaKeyPair, kid: &str, claims: &serde_json::Value) -> String {
    let input = format!(
        "{}.{}",
        b64(json!({"alg": "ES256", "kid": kid}).to_string()),
        b64(claims.to_string())
    );
    let signature = key.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
    format!("{input}.{}", b64(signature))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A loopback server answering `/keys` with a JWK Set holding the RFC key as `k1` (and
/// `/down` with `503`), counting the requests.
async fn key_server() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let set = json!({"keys": [
        {"kty": "RSA", "use": "enc", "kid": "enc-1", "n": "AQAB", "e": "AQAB"},
        {"kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig", "x": A3_X, "y": A3_Y},
    ]})
    .to_string();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (seen, set) = (seen.clone(), set.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut read = 0;
                while !buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf[read..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => read += n,
                    }
                }
                seen.fetch_add(1, Ordering::SeqCst);
                let reply = if buf.starts_with(b"GET /keys ") {
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{set}",
                        set.len()
                    )
                } else {
                    "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".into()
                };
                let _ = stream.write_all(reply.as_bytes()).await;
            });
        }
    });
    (format!("http://{addr}"), count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_verified_against_the_providers_key_set() {
    let (base, fetches) = key_server().await;
    let Some(sluice) = Sluice::start_with_env(
        Backend::Sqlite,
        &[("SLUICE_ALLOW_HOSTS", "http://127.0.0.1:*")],
    )
    .await
    else {
        return;
    };
    let installation = |url: String| {
        let sluice = &sluice;
        async move {
            let inst = sluice
                .create_installation("faulty", json!({"mode": "jwt", "url": url}))
                .await;
            inst["installation_id"].as_str().unwrap().to_string()
        }
    };
    let inst = installation(format!("{base}/keys")).await;
    let deliver = |inst: String, token: String| {
        let sluice = &sluice;
        async move {
            let bearer = format!("Bearer {token}");
            sluice
                .post_webhook(&inst, &[("authorization", &bearer)], b"{}".to_vec())
                .await
        }
    };
    let key = rfc_key();
    let claims =
        |jti: &str, exp: i64| json!({"iss": "https://issuer.example", "jti": jti, "exp": exp});

    // Two valid tokens: both stored, named by their `jti`; the set fetched once.
    for jti in ["tok-1", "tok-2"] {
        let resp = deliver(inst.clone(), sign(&key, "k1", &claims(jti, now() + 300))).await;
        assert_eq!(resp.status.as_u16(), 200, "{}", resp.text);
    }
    assert_eq!(sluice.provider_event_ids(&inst).await, ["tok-1", "tok-2"]);
    assert_eq!(fetches.load(Ordering::SeqCst), 1);

    // Refused: another key under the same id, an expired token, `alg: none`, a key id
    // the set lacks (no second fetch within the minute), the encryption key's id.
    let none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "kid": "k1"}).to_string()),
        b64(claims("tok-none", now() + 300).to_string())
    );
    let refused = [
        (
            sign(&other_key(), "k1", &claims("tok-forged", now() + 300)),
            "JWT signature does not verify",
        ),
        (
            sign(&key, "k1", &claims("tok-expired", now() - 1)),
            "JWT has expired",
        ),
        (none, "JWT algorithm \"none\" is not RS256 or ES256"),
        (
            sign(&key, "k9", &claims("tok-k9", now() + 300)),
            "no ES256 key \"k9\" in the JWK Set",
        ),
        (
            sign(&key, "enc-1", &claims("tok-enc", now() + 300)),
            "no ES256 key \"enc-1\" in the JWK Set",
        ),
    ];
    for (token, reason) in refused {
        let before = sluice.log().len();
        let resp = deliver(inst.clone(), token).await;
        assert_eq!(resp.status.as_u16(), 401, "{reason}: {}", resp.text);
        let log = sluice.log();
        assert!(
            log[before..].contains(reason),
            "no {reason:?} in the log:\n{}",
            &log[before..]
        );
    }
    assert_eq!(sluice.provider_event_ids(&inst).await, ["tok-1", "tok-2"]);
    assert_eq!(fetches.load(Ordering::SeqCst), 1);

    // A key set at an origin the driver may not reach: nothing is fetched.
    let denied = installation("https://keys.example.net/keys".into()).await;
    let before = sluice.log().len();
    let resp = deliver(
        denied.clone(),
        sign(&key, "k1", &claims("tok-d", now() + 300)),
    )
    .await;
    assert_eq!(resp.status.as_u16(), 500, "{}", resp.text);
    assert!(sluice.log()[before..].contains("https://keys.example.net is not a granted origin"));

    // A key set that cannot be fetched (and was never cached): the provider should retry.
    let down = installation(format!("{base}/down")).await;
    let before = sluice.log().len();
    let resp = deliver(
        down.clone(),
        sign(&key, "k1", &claims("tok-u", now() + 300)),
    )
    .await;
    assert_eq!(resp.status.as_u16(), 500, "{}", resp.text);
    assert!(sluice.log()[before..].contains("answered 503 Service Unavailable"));
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
    for inst in [&denied, &down] {
        assert!(sluice.events(inst).await.is_empty());
    }
}
