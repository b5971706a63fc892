//! `sluice driver new NAME [--dir PATH] [--sdk PATH]`: a driver crate on the SDK, outside
//! any workspace, with one signed fixture and the snapshot it passes.
//!
//! The crate depends on the SDK by path (the SDK is not on crates.io; it generates its
//! bindings from the `wit/` beside it). The default is the checkout this binary was built
//! from. The checkout's `Cargo.lock` seeds the crate's, so it resolves the versions the SDK
//! was tested with and builds from what cargo has already downloaded.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::crypto::{HmacAlgorithm, hmac as compute_hmac};

/// The SDK of the checkout this binary was built from.
const BUILT_FROM_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../sdk");

/// The fixture's signing secret: a test value, written into the fixture.
const FIXTURE_SECRET: &str = "whsec_driver_new_test_secret";

const BODY: &str = include_str!("template/payment_succeeded.body.json");

/// (path in the crate, template)
const FILES: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("template/Cargo.toml.tmpl")),
    (".gitignore", include_str!("template/gitignore.tmpl")),
    ("README.md", include_str!("template/README.md.tmpl")),
    ("src/lib.rs", include_str!("template/lib.rs.tmpl")),
    ("src/webhook.rs", include_str!("template/webhook.rs.tmpl")),
    (
        "src/normalize.rs",
        include_str!("template/normalize.rs.tmpl"),
    ),
    (
        "src/component.rs",
        include_str!("template/component.rs.tmpl"),
    ),
    ("fixtures/payment_succeeded.body.json", BODY),
    (
        "fixtures/payment_succeeded.request.json",
        include_str!("template/payment_succeeded.request.json.tmpl"),
    ),
    (
        "fixtures/payment_succeeded.snapshot.json",
        include_str!("template/payment_succeeded.snapshot.json"),
    ),
];

/// Whether `id` is a valid driver id, `[a-z][a-z0-9_-]{0,31}` (the host's rule).
fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    id.len() <= 32
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// The SDK directory to depend on, checked and made absolute.
fn sdk_dir(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let (dir, from) = match given {
        Some(dir) => (dir, "--sdk"),
        None => (
            PathBuf::from(BUILT_FROM_SDK),
            "the checkout this sluice was built from",
        ),
    };
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).with_context(|| {
        format!(
            "no Sluice SDK at {} ({from}): pass --sdk PATH to a Sluice checkout's sdk/ directory",
            dir.display()
        )
    })?;
    if !text.contains("name = \"sluice-sdk\"") {
        bail!("{} is not the sluice-sdk crate", manifest.display());
    }
    if !dir.join("../wit").is_dir() {
        bail!(
            "{}: no wit/ directory beside the SDK (it generates its bindings from ../wit)",
            dir.display()
        );
    }
    dir.canonicalize()
        .with_context(|| format!("resolving {}", dir.display()))
}

/// `text` as the inside of a TOML basic string.
fn toml_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Write the crate for driver `id`; prints what it made and how to go on.
pub fn run(id: &str, dir: Option<PathBuf>, sdk: Option<PathBuf>) -> anyhow::Result<()> {
    if !valid_id(id) {
        bail!("{id:?} is not a driver id: it must match [a-z][a-z0-9_-]{{0,31}}");
    }
    let dir = dir.unwrap_or_else(|| PathBuf::from(id));
    if std::fs::read_dir(&dir).is_ok_and(|mut entries| entries.next().is_some()) {
        bail!("{} exists and is not empty", dir.display());
    }
    let sdk = sdk_dir(sdk)?;
    let sdk_text = sdk
        .to_str()
        .context("the SDK's path is not UTF-8, which Cargo.toml cannot hold")?;
    let crate_name = format!("sluice-driver-{id}");
    let wasm = crate_name.replace('-', "_");
    let signature = hex::encode(compute_hmac(
        HmacAlgorithm::Sha256,
        FIXTURE_SECRET.as_bytes(),
        BODY.as_bytes(),
    ));
    let fill = |template: &str| {
        template
            .replace("{{id}}", id)
            .replace("{{crate}}", &crate_name)
            .replace("{{wasm}}", &wasm)
            .replace("{{sdk}}", &toml_escape(sdk_text))
            .replace("{{secret}}", FIXTURE_SECRET)
            .replace("{{signature}}", &signature)
    };
    for (path, template) in FILES {
        write(&dir.join(path), &fill(template))?;
    }
    // The checkout's lock: the versions the SDK is built and tested with.
    let lock = sdk.join("../Cargo.lock");
    if lock.is_file() {
        std::fs::copy(&lock, dir.join("Cargo.lock"))
            .with_context(|| format!("copying {}", lock.display()))?;
    }
    println!("created {} ({crate_name}, driver id {id:?})", dir.display());
    println!("  sluice-sdk = {{ path = \"{sdk_text}\" }}");
    println!("next:");
    println!("  cd {}", dir.display());
    println!("  cargo build --target wasm32-wasip2 --profile driver");
    println!("  sluice driver test target/wasm32-wasip2/driver/{wasm}.wasm --fixtures fixtures");
    Ok(())
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_ids_follow_the_hosts_rule() {
        for ok in ["acme", "a", "my-driver_2", &"a".repeat(32)] {
            assert!(valid_id(ok), "{ok}");
        }
        for bad in ["", "Acme", "2fa", "-x", "a b", "ação", &"a".repeat(33)] {
            assert!(!valid_id(bad), "{bad}");
        }
    }

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_escape(r#"C:\a "b""#), r#"C:\\a \"b\""#);
    }

    #[test]
    fn the_fixture_signature_is_the_hmac_of_the_body_file() {
        // The body is signed byte for byte, its final newline included; the value is
        // `openssl dgst -sha256 -hmac whsec_driver_new_test_secret -hex < template/payment_succeeded.body.json`.
        assert!(BODY.ends_with("}\n"));
        assert_eq!(
            hex::encode(compute_hmac(
                HmacAlgorithm::Sha256,
                FIXTURE_SECRET.as_bytes(),
                BODY.as_bytes(),
            )),
            "e11c0f346f9f010b2ad30e80abb79f2b41c00e976064ab42b5c1321f2d54f04b"
        );
    }
}
