//! The `secrets` capability: cryptography over named installation secrets, computed
//! host-side. No function hands a secret's bytes to the guest, and secret values are
//! never logged (`SecretValue`'s `Debug` is redacted).
//!
//! A name resolves to the installation's secret, else to the operator's app credential of
//! that name for the driver (`[drivers.<id>] app_secrets`). The checks (`verify-hmac`,
//! `equals`, `verify-jwt`) also accept a rotated secret's previous value while its grace
//! period lasts, so a provider still signing with the old secret is not refused; outbound
//! requests only ever use the primary value.

use std::collections::HashMap;
use std::sync::Arc;

use sluice_store::Writes;
use wasmtime::component::{HasSelf, Linker};

use crate::crypto::{self, constant_time_eq};

use super::{
    CallScope, CallState, Capability, CapabilityConfig, DataSource, DriverContext,
    InstallationScope,
};
use crate::policy::Policy;
use crate::wit::secrets::{Error, HmacAlgorithm, Host, JwksError};

/// A secret's bytes: zeroed on drop, `[redacted]` in `Debug` (the store's type, so a value
/// read or captured here is committed without another copy).
pub use sluice_store::SecretBytes as SecretValue;

/// The secrets capability's section, `[capabilities.secrets]`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecretsConfig {
    /// Comparisons against a secret one call may ask for (`equals`, each `verify-hmac`
    /// candidate, `verify-jwt`), so a driver cannot use the host as an oracle to guess a
    /// weak secret; past it they fail with `invalid`. Default 256.
    pub max_checks_per_call: u32,
}

impl Default for SecretsConfig {
    fn default() -> Self {
        Self {
            max_checks_per_call: 256,
        }
    }
}

/// The secrets capability: the operator's app credentials come from the policy.
pub struct Secrets {
    policy: Policy,
    max_checks: u32,
}

/// What a driver may name: the secrets it declared, and the operator's app credentials
/// for it (`[drivers.<id>] app_secrets`) that installations without their own fall back
/// to.
#[derive(Default)]
pub struct DriverSecrets {
    declared: Vec<String>,
    app: Arc<HashMap<String, SecretValue>>,
}

impl DriverSecrets {
    /// Whether the operator configured an app credential of this name for the driver.
    pub fn has_app_secret(&self, name: &str) -> bool {
        self.app.contains_key(name)
    }
}

/// One call's secrets: the installation, what the driver may name, a cache of what was
/// read, and the values captured from provider responses (OAuth tokens).
pub struct CallSecrets {
    installation: Option<InstallationScope>,
    driver: Arc<DriverSecrets>,
    cache: HashMap<String, Option<SecretValue>>,
    captured: Vec<(String, SecretValue)>,
    /// How many of `captured` are already stored.
    stored: usize,
    /// Comparisons the call may still ask for.
    checks_left: u32,
}

impl Capability for Secrets {
    const INTERFACE: &'static str = "secrets";
    const FUNCTIONS: &'static [&'static str] = &[
        "verify-hmac",
        "equals",
        "verify-jwt",
        "verify-jwt-jwks",
        "exists",
    ];
    type Config = SecretsConfig;
    type Driver = DriverSecrets;
    type Call = CallSecrets;

    fn new(config: &SecretsConfig, host: &CapabilityConfig) -> anyhow::Result<Self> {
        Ok(Secrets {
            policy: host.policy.clone(),
            max_checks: config.max_checks_per_call,
        })
    }

    fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
        crate::wit::secrets::add_to_linker::<_, HasSelf<CallState>>(linker, |s| s)
    }

    fn driver(&self, driver: &DriverContext<'_>) -> Result<DriverSecrets, String> {
        let info = driver.info;
        let app = self.policy.app_secrets(info.id.as_str());
        for name in app.keys() {
            if !info.secrets.iter().any(|s| &s.name == name) {
                tracing::warn!(driver = %info.id, secret = %name, "[drivers.{}] app_secrets names a secret the driver does not declare; it is never used", info.id);
            }
        }
        Ok(DriverSecrets {
            declared: info.secrets.iter().map(|s| s.name.clone()).collect(),
            app,
        })
    }

    fn start_call(&self, driver: &Arc<DriverSecrets>, scope: &CallScope) -> CallSecrets {
        CallSecrets {
            installation: scope.installation.clone(),
            driver: driver.clone(),
            cache: HashMap::new(),
            captured: Vec::new(),
            stored: 0,
            checks_left: self.max_checks,
        }
    }

    fn finish_call(call: &mut CallSecrets, writes: &mut Writes) {
        // What was stored as it arrived is not written twice.
        writes.secrets.extend(call.captured.drain(call.stored..));
    }
}

impl CallSecrets {
    /// Take `n` comparisons from the call's budget; `Err` once it is spent.
    fn spend_checks(&mut self, n: usize) -> Result<(), Error> {
        let n = u32::try_from(n.max(1)).unwrap_or(u32::MAX);
        match self.checks_left.checked_sub(n) {
            Some(left) => {
                self.checks_left = left;
                Ok(())
            }
            None => {
                self.checks_left = 0;
                Err(Error::Invalid(
                    "this call's budget of comparisons against secrets is spent".into(),
                ))
            }
        }
    }

    /// Look a declared secret up. Store failures trap the call (`Err`); an undeclared or
    /// missing secret is the guest's `Ok(Err(..))`.
    pub async fn lookup(&mut self, name: &str) -> wasmtime::Result<Result<SecretValue, Error>> {
        if !self.is_declared(name) {
            return Ok(Err(Error::NotDeclared(name.to_string())));
        }
        if let Some((_, value)) = self.captured.iter().rev().find(|(n, _)| n == name) {
            return Ok(Ok(value.clone()));
        }
        if !self.cache.contains_key(name) {
            let value = match &self.installation {
                None => None,
                Some(InstallationScope {
                    data: DataSource::Fixed(data),
                    ..
                }) => data.secrets.get(name).cloned(),
                Some(InstallationScope {
                    id,
                    data: DataSource::Store(store),
                }) => store
                    .get_secret(id, name)
                    .await
                    .map_err(|e| wasmtime::Error::msg(format!("reading secret {name:?}: {e}")))?,
                Some(InstallationScope {
                    data: DataSource::Installation(installation),
                    ..
                }) => installation
                    .secret(name)
                    .map_err(|e| wasmtime::Error::msg(format!("opening secret {name:?}: {e}")))?,
            };
            let value = value.or_else(|| self.driver.app.get(name).cloned());
            self.cache.insert(name.to_string(), value);
        }
        Ok(match self.cache.get(name).cloned().flatten() {
            Some(value) => Ok(value),
            None => Err(Error::NotFound(name.to_string())),
        })
    }

    /// Whether the driver declared `name` (only declared secrets can be read or captured).
    pub fn is_declared(&self, name: &str) -> bool {
        self.driver.declared.iter().any(|d| d == name)
    }

    /// The previous value of a rotated secret, while its grace period lasts at `now`.
    pub async fn lookup_previous(
        &mut self,
        name: &str,
        now: i64,
    ) -> wasmtime::Result<Option<SecretValue>> {
        if !self.is_declared(name) {
            return Ok(None);
        }
        let read = |e: sluice_store::StoreError| {
            wasmtime::Error::msg(format!("reading the previous value of {name:?}: {e}"))
        };
        Ok(match &self.installation {
            None => None,
            Some(InstallationScope {
                data: DataSource::Fixed(_),
                ..
            }) => None,
            Some(InstallationScope {
                id,
                data: DataSource::Store(store),
            }) => store.previous_secret(id, name, now).await.map_err(read)?,
            Some(InstallationScope {
                data: DataSource::Installation(installation),
                ..
            }) => installation.previous_secret(name, now).map_err(read)?,
        })
    }

    /// Record a secret captured from a provider response during this call.
    pub fn capture(&mut self, name: String, value: SecretValue) {
        self.captured.push((name, value));
    }

    /// Store what was captured and not stored yet, now (not when the call ends): a
    /// provider that rotates its refresh token has invalidated the old one already, so the
    /// new one must be durable before anything else can go wrong. Given values
    /// (`sluice driver test`) stay in the call.
    pub async fn store_captured(&mut self) -> Result<(), sluice_store::StoreError> {
        let Some(InstallationScope { id, data }) = &self.installation else {
            return Ok(());
        };
        let store = match data {
            DataSource::Fixed(_) => return Ok(()),
            DataSource::Store(store) => store,
            DataSource::Installation(installation) => installation.store(),
        };
        if self.stored < self.captured.len() {
            store
                .put_captured_secrets(id, &self.captured[self.stored..])
                .await?;
            self.stored = self.captured.len();
        }
        Ok(())
    }
}

impl From<HmacAlgorithm> for crate::crypto::HmacAlgorithm {
    fn from(a: HmacAlgorithm) -> Self {
        match a {
            HmacAlgorithm::Sha1 => Self::Sha1,
            HmacAlgorithm::Sha256 => Self::Sha256,
            HmacAlgorithm::Sha512 => Self::Sha512,
        }
    }
}

impl CallState {
    /// The previous value of a rotated secret, if its grace period lasts at the call's now.
    async fn previous(&mut self, name: &str) -> wasmtime::Result<Option<SecretValue>> {
        let now = i64::try_from(self.caps.clock.now().as_secs()).unwrap_or(i64::MAX);
        self.caps.secrets.lookup_previous(name, now).await
    }
}

impl Host for CallState {
    async fn verify_hmac(
        &mut self,
        secret: String,
        algorithm: HmacAlgorithm,
        message: Vec<u8>,
        candidates: Vec<Vec<u8>>,
    ) -> wasmtime::Result<Result<bool, Error>> {
        if let Err(e) = self.caps.secrets.spend_checks(candidates.len()) {
            return Ok(Err(e));
        }
        let matches = |key: &SecretValue| {
            let expected = crypto::hmac(algorithm.into(), key.expose(), &message);
            crypto::any_equal(&expected, &candidates)
        };
        match self.caps.secrets.lookup(&secret).await? {
            Ok(key) if matches(&key) => Ok(Ok(true)),
            Ok(_) => Ok(Ok(self
                .previous(&secret)
                .await?
                .is_some_and(|k| matches(&k)))),
            Err(e) => Ok(Err(e)),
        }
    }

    async fn equals(
        &mut self,
        secret: String,
        candidate: Vec<u8>,
    ) -> wasmtime::Result<Result<bool, Error>> {
        if let Err(e) = self.caps.secrets.spend_checks(1) {
            return Ok(Err(e));
        }
        match self.caps.secrets.lookup(&secret).await? {
            Ok(value) if constant_time_eq(value.expose(), &candidate) => Ok(Ok(true)),
            Ok(_) => Ok(Ok(self
                .previous(&secret)
                .await?
                .is_some_and(|v| constant_time_eq(v.expose(), &candidate)))),
            Err(e) => Ok(Err(e)),
        }
    }

    async fn verify_jwt(
        &mut self,
        secret: String,
        token: String,
    ) -> wasmtime::Result<Result<String, Error>> {
        if let Err(e) = self.caps.secrets.spend_checks(1) {
            return Ok(Err(e));
        }
        let now = i64::try_from(self.caps.clock.now().as_secs()).unwrap_or(i64::MAX);
        let key = match self.caps.secrets.lookup(&secret).await? {
            Ok(key) => key,
            Err(e) => return Ok(Err(e)),
        };
        match super::jwt::verify_hs256(key.expose(), &token, now) {
            Ok(claims) => Ok(Ok(claims)),
            Err(reason) => Ok(match self.previous(&secret).await? {
                Some(old) => super::jwt::verify_hs256(old.expose(), &token, now)
                    .map_err(|_| Error::Invalid(reason)),
                None => Err(Error::Invalid(reason)),
            }),
        }
    }

    async fn verify_jwt_jwks(
        &mut self,
        jwks_url: String,
        token: String,
    ) -> wasmtime::Result<Result<String, JwksError>> {
        Ok(self.check_jwt_with_key_set(&jwks_url, &token).await)
    }

    async fn exists(&mut self, secret: String) -> wasmtime::Result<bool> {
        Ok(self.caps.secrets.lookup(&secret).await?.is_ok())
    }
}
