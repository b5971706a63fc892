//! Loading a driver component: compile (or load from cache), link, read and validate its
//! metadata. A component that fails any step is refused with the reason; drivers
//! already loaded are not touched.

use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest, Sha256};
use wasmtime::Store;

use super::{Runtime, cache};
use crate::capabilities::{CallScope, CallState, DataSource, DriverContext, DriverScope};
use crate::metadata::DriverInfo;
use crate::net::OriginPattern;
use crate::wit::{DriverPre, WIT_VERSION};

/// Why a component was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("not a valid component: {0}")]
    Compile(String),
    #[error("does not implement the sluice:driver@{WIT_VERSION} world: {0}")]
    World(String),
    #[error("metadata call failed: {0}")]
    Metadata(String),
    #[error("invalid metadata: {0}")]
    InvalidMetadata(String),
}

/// Most a driver's metadata may make the host allocate when it is lifted (its settings
/// schema, descriptions and templates are a few kilobytes).
const MAX_METADATA_LIFT: usize = 1 << 20;

/// A loaded, linked, validated driver, ready to instantiate per call.
pub struct LoadedDriver {
    pub info: DriverInfo,
    /// The settings property marked with [`ACCOUNT_KEY_ANNOTATION`], if any.
    pub account_key_setting: Option<String>,
    pub(crate) pre: DriverPre<CallState>,
    pub(crate) exports: super::exports::Exports,
    settings_validator: jsonschema::Validator,
    /// What every call of this driver may name and reach.
    pub scope: Arc<DriverScope>,
    /// This driver's share of the instance slots (`max_concurrent_instances` of its
    /// limits), taken before a slot of the runtime's.
    pub(crate) slots: Arc<tokio::sync::Semaphore>,
}

/// One failing location of a settings object.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct SettingsViolation {
    /// JSON pointer into the settings, `""` for the object itself.
    pub path: String,
    pub message: String,
}

impl LoadedDriver {
    /// Validate installation settings against the driver's schema.
    pub fn validate_settings(
        &self,
        settings: &serde_json::Value,
    ) -> Result<(), Vec<SettingsViolation>> {
        let violations: Vec<_> = self
            .settings_validator
            .iter_errors(settings)
            .map(|e| SettingsViolation {
                path: e.instance_path().to_string(),
                message: e.to_string(),
            })
            .collect();
        if violations.is_empty() {
            Ok(())
        } else {
            Err(violations)
        }
    }

    /// The installation's account key: its value of the annotated settings property.
    pub fn account_key(&self, settings: &serde_json::Value) -> Option<String> {
        let property = self.account_key_setting.as_deref()?;
        settings.get(property)?.as_str().map(str::to_string)
    }

    /// The scope of a routing call (`route-key`): no installation, no secrets.
    pub fn routing_scope(&self) -> CallScope {
        CallScope::driver_only(self.scope.clone())
    }

    /// The scope of a call on behalf of an installation.
    pub fn scope(
        &self,
        installation: &sluice_store::InstallationId,
        data: DataSource,
    ) -> CallScope {
        CallScope::installation(self.scope.clone(), installation.clone(), data)
    }
}

impl Runtime {
    /// Compile, link and validate a driver component.
    pub async fn load_driver(&self, bytes: &[u8]) -> Result<LoadedDriver, LoadError> {
        let sha256 = hex::encode(Sha256::digest(bytes));
        let component = {
            let engine = self.engine().clone();
            let cache = self.cache().cloned();
            let (sha, bytes) = (sha256.clone(), bytes.to_vec());
            // Compilation is CPU-bound and can take a second: keep it off the reactor.
            tokio::task::spawn_blocking(move || {
                cache::compile(&engine, cache.as_ref(), &sha, &bytes)
            })
            .await
            .map_err(|e| LoadError::Compile(e.to_string()))?
            .map_err(|e| LoadError::Compile(format!("{e:#}")))?
        };
        if let Some(reason) = super::world::missing_import(self.engine(), &component) {
            return Err(LoadError::World(reason));
        }
        let instance_pre = self
            .linker()
            .instantiate_pre(&component)
            .map_err(|e| LoadError::World(format!("{e:#}")))?;
        let exports =
            super::exports::Exports::find(instance_pre.component()).map_err(LoadError::World)?;
        let pre = DriverPre::new(instance_pre).map_err(|e| LoadError::World(format!("{e:#}")))?;

        let loading = Arc::new(DriverScope::loading(crate::limits::DriverLimits::defaults(
            self.limits(),
        )));
        let state = CallState::new(self.capabilities(), &CallScope::driver_only(loading));
        let mut store = Store::new(self.engine(), state);
        store.set_epoch_deadline(1);
        // Metadata is a few kilobytes; lifting more is refused before it is copied.
        store.set_hostcall_fuel(MAX_METADATA_LIFT);
        let deadline = std::time::Instant::now() + self.limits().webhook_timeout();
        store.limiter(|s| s.store_limits());
        store.epoch_deadline_callback(move |_| super::session::deadline_check(deadline));
        // The epoch deadline stops guest code; the timeout stops a call parked in the host.
        let budget = self.limits().webhook_timeout();
        let raw = tokio::time::timeout(budget, async {
            let driver = pre.instantiate_async(&mut store).await?;
            driver.sluice_driver_metadata().call_get(&mut store).await
        })
        .await;
        let past_deadline = || {
            LoadError::Metadata(format!(
                "metadata did not return within its {} ms deadline",
                budget.as_millis()
            ))
        };
        let raw = match raw {
            Err(_) => return Err(past_deadline()),
            Ok(Err(e))
                if e.downcast_ref::<super::session::DeadlineExceeded>()
                    .is_some() =>
            {
                return Err(past_deadline());
            }
            Ok(Err(e)) => return Err(LoadError::Metadata(format!("{e:#}"))),
            Ok(Ok(raw)) => raw,
        };
        let mut info =
            crate::metadata::validate(raw, sha256).map_err(LoadError::InvalidMetadata)?;
        info.size_bytes = bytes.len();
        let settings_validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&info.settings_schema)
            .map_err(|e| {
                LoadError::InvalidMetadata(format!(
                    "settings-schema is not a valid JSON Schema: {e}"
                ))
            })?;
        let origins = info
            .outbound_hosts
            .iter()
            .map(|h| {
                OriginPattern::parse(h)
                    .map_err(|e| LoadError::InvalidMetadata(format!("outbound-hosts: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let account_key_setting = crate::metadata::account_key_setting(&info.settings_schema)
            .map_err(LoadError::InvalidMetadata)?;
        let resolved = self.policy().resolve(info.id.as_str(), &origins);
        info.granted_hosts = resolved.effective.iter().map(ToString::to_string).collect();
        info.disabled_hosts = resolved.disabled.iter().map(ToString::to_string).collect();
        info.grant = resolved.source;
        info.limits = self.policy().limits(info.id.as_str(), self.limits());
        if !resolved.disabled.is_empty() {
            tracing::warn!(
                driver = %info.id,
                disabled = ?info.disabled_hosts,
                "driver asks for origins the policy does not grant; they are disabled \
                 (grant them under [drivers.{}] origins)",
                info.id
            );
        }
        let caps = self
            .capabilities()
            .driver(&DriverContext {
                info: &info,
                origins: &resolved,
            })
            .map_err(LoadError::InvalidMetadata)?;
        let scope = Arc::new(DriverScope {
            id: info.id.to_string(),
            version: info.version.clone(),
            limits: info.limits,
            caps,
        });
        Ok(LoadedDriver {
            account_key_setting,
            slots: Arc::new(tokio::sync::Semaphore::new(
                scope.limits.max_concurrent_instances as usize,
            )),
            scope,
            settings_validator,
            pre,
            exports,
            info,
        })
    }
}
