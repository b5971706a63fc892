//! Loading drivers: files that are not usable drivers are refused one by one with a
//! clear reason (in the server log and by `sluice driver inspect`) while the good ones
//! serve, and compiled code is cached in the data dir across restarts.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use reqwest::Method;
use sha2::{Digest, Sha256};
use sluice_testkit::{
    Backend, Sluice, TempDir, both_backends, bundled_driver, sluice_cli, stripe_charge_variant,
    test_driver,
};

both_backends!(bad_components_are_refused_alone => sqlite_bad_components_are_refused_alone, postgres_bad_components_are_refused_alone);
both_backends!(compiled_code_is_cached_across_restarts => sqlite_compiled_code_is_cached_across_restarts, postgres_compiled_code_is_cached_across_restarts);

/// A file that must be refused: (file name, bytes, what the refusal must say).
struct BadFile {
    name: &'static str,
    bytes: Vec<u8>,
    reasons: &'static [&'static str],
}

fn bad_files() -> Vec<BadFile> {
    // Fixed-seed xorshift: the same "random" bytes every run, never the wasm magic.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let garbage: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8 | 0x80
        })
        .collect();
    vec![
        BadFile {
            name: "faulty-bad-metadata.wasm",
            bytes: std::fs::read(test_driver("faulty-bad-metadata")).expect("reading driver"),
            reasons: &["invalid metadata", "Bad Id!"],
        },
        // Loops in `metadata`: cut off at the load deadline, so start-up cannot hang.
        BadFile {
            name: "faulty-loop-metadata.wasm",
            bytes: std::fs::read(test_driver("faulty-loop-metadata")).expect("reading driver"),
            reasons: &["metadata", "deadline"],
        },
        BadFile {
            name: "garbage.wasm",
            bytes: garbage,
            reasons: &["not a valid component"],
        },
        // A valid (empty) core module: wasm, but not a component.
        BadFile {
            name: "core-module.wasm",
            bytes: b"\0asm\x01\0\0\0".to_vec(),
            reasons: &["not a valid component", "module"],
        },
        // A valid (empty) component that exports nothing.
        BadFile {
            name: "empty-component.wasm",
            bytes: b"\0asm\x0d\0\x01\0".to_vec(),
            reasons: &["does not implement", "sluice:driver"],
        },
    ]
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn bad_components_are_refused_alone(backend: Backend) {
    let bad = bad_files();
    let extra: Vec<(&str, &[u8])> = bad.iter().map(|f| (f.name, f.bytes.as_slice())).collect();
    let Some(sluice) = Sluice::start_with(backend, &[], &extra).await else {
        return;
    };

    let resp = sluice.admin(Method::GET, "/v1/drivers", None).await;
    resp.expect_status(200);
    let ids: Vec<&str> = resp.json["drivers"]
        .as_array()
        .unwrap_or_else(|| panic!("no drivers array in {}", resp.text))
        .iter()
        .map(|d| d["id"].as_str().expect("driver id"))
        .collect();
    assert_eq!(ids, ["faulty", "stripe"], "{}", resp.text);

    let log = sluice.log();
    for file in &bad {
        let path = sluice.drivers_dir().join(file.name);
        let line = log
            .lines()
            .find(|l| l.contains("driver refused") && l.contains(&format!("{}:", path.display())))
            .unwrap_or_else(|| panic!("no refusal of {} in the log:\n{log}", file.name));
        for reason in file.reasons {
            assert!(
                line.contains(reason),
                "refusal of {} does not say {reason:?}: {line}",
                file.name
            );
        }
    }

    let (stripe, secret) = sluice.stripe_installation().await;
    let payload = stripe_charge_variant("evt_e2e_loading", "ch_e2e_loading", "usd", 100);
    sluice
        .post_stripe(&stripe, &secret, &payload)
        .await
        .expect_status(200);
    assert_eq!(sluice.events(&stripe).await.len(), 1);
}

#[test]
fn inspect_refuses_bad_files_and_describes_good_ones() {
    let dir = TempDir::new("sluice-inspect");
    for file in bad_files() {
        let path = dir.path().join(file.name);
        std::fs::write(&path, &file.bytes).expect("writing file");
        let out = sluice_cli(dir.path())
            .args(["driver", "inspect"])
            .arg(&path)
            .output()
            .expect("running sluice driver inspect");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "inspect accepted {}: {}",
            file.name,
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(out.stdout.is_empty(), "{} printed metadata", file.name);
        for reason in file.reasons {
            assert!(
                stderr.contains(reason),
                "inspect of {} does not say {reason:?}: {stderr}",
                file.name
            );
        }
    }

    let stripe = bundled_driver("stripe");
    let out = sluice_cli(dir.path())
        .args(["driver", "inspect"])
        .arg(&stripe)
        .output()
        .expect("running sluice driver inspect");
    assert!(
        out.status.success(),
        "inspect of stripe.wasm failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).expect("inspect prints JSON");
    assert_eq!(info["id"], "stripe", "{info:#}");
    let bytes = std::fs::read(&stripe).expect("reading stripe.wasm");
    assert_eq!(info["sha256"], sha256_hex(&bytes), "{info:#}");
}

/// Every file in the cache dir with its modification time.
fn cache_listing(dir: &Path) -> BTreeMap<String, SystemTime> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| {
            let entry = entry.expect("cache entry");
            let modified = entry
                .metadata()
                .and_then(|m| m.modified())
                .expect("entry mtime");
            (entry.file_name().to_string_lossy().into_owned(), modified)
        })
        .collect()
}

async fn compiled_code_is_cached_across_restarts(backend: Backend) {
    // A cache of its own (the suite otherwise shares one), so the first start compiles.
    let cache_dir = TempDir::new("sluice-cache");
    let cache = cache_dir.path().join("cache");
    let cache_env = cache.to_str().expect("UTF-8 temp path");
    let Some(mut sluice) =
        Sluice::start_with_env(backend, &[("SLUICE_CACHE_DIR", cache_env)]).await
    else {
        return;
    };
    let stripe_sha = sha256_hex(&std::fs::read(bundled_driver("stripe")).expect("reading"));
    let before = cache_listing(&cache);
    let stripe_entries: Vec<&String> = before
        .keys()
        .filter(|name| name.starts_with(&format!("{stripe_sha}-")) && name.ends_with(".cwasm"))
        .collect();
    assert_eq!(
        stripe_entries.len(),
        1,
        "cache entries for stripe ({stripe_sha}): {before:#?}"
    );
    assert!(
        before.keys().all(|name| name.ends_with(".cwasm")),
        "stray files in the cache: {before:#?}"
    );
    let entry = cache.join(stripe_entries[0]);
    assert!(
        entry.metadata().expect("entry").len() > 0,
        "empty cache entry"
    );

    sluice.restart().await;
    let after = cache_listing(&cache);
    assert_eq!(before, after, "the restart rewrote the cache");

    // The drivers loaded from the cache work.
    let (stripe, secret) = sluice.stripe_installation().await;
    let payload = stripe_charge_variant("evt_e2e_cached", "ch_e2e_cached", "usd", 100);
    sluice
        .post_stripe(&stripe, &secret, &payload)
        .await
        .expect_status(200);
    assert_eq!(sluice.events(&stripe).await.len(), 1);

    // An entry this host did not write — here, one byte of its code changed, as an
    // attacker with write access to the cache directory would — is never loaded: it is
    // ignored with a warning, the driver compiled again, and the entry replaced.
    let mut tampered = std::fs::read(&entry).expect("reading the entry");
    let at = tampered.len() / 2;
    tampered[at] ^= 0x01;
    std::fs::write(&entry, &tampered).expect("tampering");
    let log_before = sluice.log().len();
    sluice.restart().await;
    let log = sluice.log();
    let log = log.get(log_before..).unwrap_or_default();
    assert!(
        log.contains("ignoring cache entry") && log.contains("its tag does not verify"),
        "{log}"
    );
    let rewritten = std::fs::read(&entry).expect("reading the entry");
    assert_ne!(rewritten, tampered, "the tampered entry was kept");
    let payload = stripe_charge_variant("evt_e2e_recompiled", "ch_e2e_recompiled", "usd", 100);
    sluice
        .post_stripe(&stripe, &secret, &payload)
        .await
        .expect_status(200);

    // A server with another master key does not trust this one's entries either: it
    // writes its own beside them.
    let other_key = "11".repeat(32);
    sluice.stop();
    let mut other = Sluice::start_with_env(
        backend,
        &[
            ("SLUICE_CACHE_DIR", cache_env),
            ("SLUICE_MASTER_KEY", other_key.as_str()),
        ],
    )
    .await
    .expect("second server");
    let entries = cache_listing(&cache)
        .into_keys()
        .filter(|name| name.starts_with(&format!("{stripe_sha}-")))
        .count();
    assert_eq!(entries, 2, "{:#?}", cache_listing(&cache));
    other.stop();
}
