//! Connection, migrations, installations, secrets and driver state.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};
use std::time::Duration;

use futures_like::BoxFuture;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AnyPool, Connection, Executor};

use crate::commit::{Sink, Writer};
use crate::{InstallationId, SecretCipher, StoreError};

/// Minimal alias so we do not need a direct `futures` dependency.
mod futures_like {
    pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
}

/// Which database a [`Store`] talks to, chosen by the URL scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// An SQLite file (`sqlite://path/to.db`): the embedded default, one node.
    Sqlite,
    /// A PostgreSQL database (`postgres://…`), shareable by several nodes.
    Postgres,
}

impl Backend {
    /// The backend a database URL designates.
    pub fn from_url(url: &str) -> Result<Backend, StoreError> {
        let scheme = url.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("sqlite") => Ok(Backend::Sqlite),
            Some("postgres" | "postgresql") => Ok(Backend::Postgres),
            _ => Err(StoreError::InvalidUrl(
                "expected a sqlite:// or postgres:// URL".into(),
            )),
        }
    }
}

/// The persistence layer: one pool, the secret cipher and the writer task that commits
/// deliveries. Cheap to clone (all shared).
///
/// Every method runs the same SQL on both backends (through `sqlx::AnyPool`); the only
/// backend-specific parts are the migrations, how a write transaction begins, and how the
/// event cursor is kept gapless (see `events`).
#[derive(Clone, Debug)]
pub struct Store {
    pub(crate) pool: AnyPool,
    pub(crate) cipher: SecretCipher,
    pub(crate) backend: Backend,
    pub(crate) writer: Writer,
    /// Bumped whenever this process commits normalized events (see
    /// [`Store::committed_events`]).
    pub(crate) committed: Arc<tokio::sync::watch::Sender<u64>>,
    /// How to reach PostgreSQL outside the pool (`LISTEN`); `None` on SQLite.
    pub(crate) pg_connect: Option<Box<PgConnectOptions>>,
    /// Told of every change to an installation's secrets made through this store.
    pub(crate) secret_watchers: Arc<SecretWatchers>,
}

/// What [`Store::watch_secret_changes`] registered.
#[derive(Default)]
pub(crate) struct SecretWatchers(std::sync::RwLock<Vec<SecretWatcher>>);

type SecretWatcher = Box<dyn Fn(&InstallationId) + Send + Sync>;

impl std::fmt::Debug for SecretWatchers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretWatchers")
    }
}

/// How long the store waits before giving up, and how many connections it keeps: the
/// host's `[store]` section.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Longest wait for a connection, a statement or a lock before the operation fails as
    /// unavailable, ms: the pool's acquire timeout, the PostgreSQL statement and lock
    /// timeouts and the SQLite busy timeout. Default 5000.
    pub timeout_ms: u64,
    /// Most connections in the pool. Default 4 on SQLite (one writer, readers beside it),
    /// 10 on PostgreSQL.
    pub max_connections: Option<u32>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            timeout_ms: 5_000,
            max_connections: None,
        }
    }
}

impl StoreConfig {
    /// The timeout of every operation.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.max(1))
    }

    /// Check what the types cannot; `Err` names the keys.
    pub fn validate(&self) -> Result<(), String> {
        if self.timeout_ms == 0 || self.max_connections == Some(0) {
            return Err("[store] timeout_ms and max_connections must be positive".into());
        }
        Ok(())
    }
}

/// Embedded migrations, one list per backend. Applied in order by version; sqlx records
/// them (with a checksum of the SQL) in `_sqlx_migrations`, so running them again is a no-op.
/// (Equivalent to `sqlx::migrate!`, which needs sqlx's `macros` feature and its
/// proc-macro build of both drivers.)
const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "event data",
        include_str!("../migrations/sqlite/0002_event_data.sql"),
    ),
    (
        3,
        "content key",
        include_str!("../migrations/sqlite/0003_content_key.sql"),
    ),
    (
        4,
        "secret audit",
        include_str!("../migrations/sqlite/0004_secret_audit.sql"),
    ),
    (
        5,
        "raw event api version",
        include_str!("../migrations/sqlite/0005_raw_event_api_version.sql"),
    ),
    (
        6,
        "auth",
        include_str!("../migrations/sqlite/0006_auth.sql"),
    ),
    (
        7,
        "poll schedule",
        include_str!("../migrations/sqlite/0007_poll_schedule.sql"),
    ),
    (
        8,
        "retries",
        include_str!("../migrations/sqlite/0008_retries.sql"),
    ),
    (
        9,
        "delivery",
        include_str!("../migrations/sqlite/0009_delivery.sql"),
    ),
    (
        10,
        "driver versions",
        include_str!("../migrations/sqlite/0010_driver_versions.sql"),
    ),
];
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "event data",
        include_str!("../migrations/postgres/0002_event_data.sql"),
    ),
    (
        3,
        "event transaction",
        include_str!("../migrations/postgres/0003_event_transaction.sql"),
    ),
    (
        4,
        "content key",
        include_str!("../migrations/postgres/0004_content_key.sql"),
    ),
    (
        5,
        "secret audit",
        include_str!("../migrations/postgres/0005_secret_audit.sql"),
    ),
    (
        6,
        "raw event api version",
        include_str!("../migrations/postgres/0006_raw_event_api_version.sql"),
    ),
    (
        7,
        "auth",
        include_str!("../migrations/postgres/0007_auth.sql"),
    ),
    (
        8,
        "poll schedule",
        include_str!("../migrations/postgres/0008_poll_schedule.sql"),
    ),
    (
        9,
        "retries",
        include_str!("../migrations/postgres/0009_retries.sql"),
    ),
    (
        10,
        "delivery",
        include_str!("../migrations/postgres/0010_delivery.sql"),
    ),
    (
        11,
        "driver versions",
        include_str!("../migrations/postgres/0011_driver_versions.sql"),
    ),
];

#[derive(Debug)]
struct Embedded(&'static [(i64, &'static str, &'static str)]);

impl MigrationSource<'static> for Embedded {
    fn resolve(self) -> BoxFuture<'static, Result<Vec<Migration>, sqlx::error::BoxDynError>> {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|&(version, description, sql)| {
                    Migration::new(
                        version,
                        Cow::Borrowed(description),
                        MigrationType::Simple,
                        Cow::Borrowed(sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// Current time, RFC 3339 UTC with a `Z`, second precision.
/// Session settings of every PostgreSQL connection: nothing waits longer than the timeout.
fn postgres_settings(timeout_ms: u128) -> String {
    format!(
        "SET statement_timeout = {timeout_ms}; SET lock_timeout = {timeout_ms}; \
         SET idle_in_transaction_session_timeout = {timeout_ms};"
    )
}

pub(crate) fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Turns `sqlite://path` / `sqlite:path` into a URL sqlx accepts that creates the file if
/// missing, creating the parent directory too. Returns the URL and the database file (none
/// in memory).
fn prepare_sqlite_url(url: &str) -> Result<(String, Option<PathBuf>), StoreError> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| StoreError::InvalidUrl("expected sqlite://path".into()))?;
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    if path.is_empty() {
        return Err(StoreError::InvalidUrl("sqlite URL has no file path".into()));
    }
    let memory = path == ":memory:";
    if !memory
        && let Some(parent) = Path::new(path)
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
    {
        crate::create_private_dir(parent)?;
    }
    let has_mode = query.is_some_and(|q| q.split('&').any(|kv| kv.starts_with("mode=")));
    let mut out = format!("sqlite://{path}");
    match (query, has_mode || memory) {
        (Some(q), true) => out = format!("{out}?{q}"),
        (Some(q), false) => out = format!("{out}?{q}&mode=rwc"),
        (None, true) => {}
        (None, false) => out.push_str("?mode=rwc"),
    }
    Ok((out, (!memory).then(|| PathBuf::from(path))))
}

impl Store {
    /// Connects to `url` with the default [`StoreConfig`]; see [`Store::connect_with`].
    pub async fn connect(url: &str, cipher: SecretCipher) -> Result<Store, StoreError> {
        Self::connect_with(url, cipher, StoreConfig::default()).await
    }

    /// Connects to `url` (`sqlite://path/to.db` or `postgres://…`), applies the migrations
    /// (idempotent; safe for several nodes starting at once, sqlx takes a lock) and starts
    /// the writer task (so this must run inside a tokio runtime).
    ///
    /// SQLite: the file and its directory are created if missing; every connection uses
    /// WAL journaling with `synchronous = FULL` (an acknowledged event survives power loss,
    /// not only a crash), enforces foreign keys and waits up to the timeout on a locked
    /// database. `sqlite::memory:` works too (one connection, gone when the store is
    /// dropped). PostgreSQL: every session gets the timeout as `statement_timeout`,
    /// `lock_timeout` and `idle_in_transaction_session_timeout`.
    ///
    /// A connection still inside a transaction is never reused: it is closed instead of
    /// being returned to the pool.
    pub async fn connect_with(
        url: &str,
        cipher: SecretCipher,
        options: StoreConfig,
    ) -> Result<Store, StoreError> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);

        let backend = Backend::from_url(url)?;
        let timeout_ms = options.timeout().as_millis();
        let pool_options = AnyPoolOptions::new()
            .acquire_timeout(options.timeout())
            // Belt and braces: transactions only run in tasks no caller can cancel (the writer,
            // `detached`), but a connection that somehow still has one open is closed, never
            // handed to the next caller.
            .after_release(|conn, _meta| Box::pin(async move { Ok(!conn.is_in_transaction()) }));
        let mut sqlite_file = None;
        let pool = match backend {
            Backend::Sqlite => {
                let (url, file) = prepare_sqlite_url(url)?;
                let memory = file.is_none();
                sqlite_file = file;
                // Checkpoints run in the background (`checkpoints`), not inside whichever
                // commit happens to fill the WAL: that commit, and every delivery in its
                // batch, would wait for the checkpoint's writes and fsync.
                let pragmas = format!(
                    "PRAGMA busy_timeout = {timeout_ms}; PRAGMA foreign_keys = ON; \
                     PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                     PRAGMA wal_autocheckpoint = {};",
                    if memory { 1000 } else { 0 }
                );
                let mut pool_options = pool_options
                    .max_connections(options.max_connections.unwrap_or(4))
                    .after_connect(move |conn, _meta| {
                        let pragmas = pragmas.clone();
                        Box::pin(async move {
                            conn.execute(pragmas.as_str()).await?;
                            Ok(())
                        })
                    });
                if memory {
                    pool_options = pool_options
                        .max_connections(1)
                        .min_connections(1)
                        .idle_timeout(None)
                        .max_lifetime(None);
                }
                pool_options.connect(&url).await?
            }
            Backend::Postgres => {
                let settings = postgres_settings(timeout_ms);
                pool_options
                    .max_connections(options.max_connections.unwrap_or(10))
                    .after_connect(move |conn, _meta| {
                        let settings = settings.clone();
                        Box::pin(async move {
                            conn.execute(settings.as_str()).await?;
                            Ok(())
                        })
                    })
                    .connect(url)
                    .await?
            }
        };
        let migrations = match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS,
            Backend::Postgres => POSTGRES_MIGRATIONS,
        };
        Migrator::new(Embedded(migrations))
            .await?
            .run(&pool)
            .await?;
        tracing::debug!(?backend, "store connected and migrated");
        let pg_connect = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(Box::new(url.parse::<PgConnectOptions>()?)),
        };
        let sink = match backend {
            Backend::Sqlite => Sink::Sqlite(pool.clone(), sqlite_file),
            Backend::Postgres => {
                let settings = postgres_settings(timeout_ms);
                let options = PgPoolOptions::new()
                    .max_connections(crate::commit::PG_WRITERS)
                    .acquire_timeout(options.timeout())
                    .after_connect(move |conn, _meta| {
                        let settings = settings.clone();
                        Box::pin(async move {
                            conn.execute(settings.as_str()).await?;
                            Ok(())
                        })
                    });
                Sink::Postgres(options, Box::new(url.parse::<PgConnectOptions>()?))
            }
        };
        let committed = Arc::new(tokio::sync::watch::Sender::new(0));
        let writer = Writer::spawn(sink, cipher.clone(), committed.clone())?;
        Ok(Store {
            pool,
            cipher,
            backend,
            writer,
            committed,
            pg_connect,
            secret_watchers: Arc::default(),
        })
    }

    /// Call `watch` with an installation's id whenever its secrets change through this
    /// store (set, rotated, captured, forgotten, its installation deleted), once the change
    /// is committed and before the method that made it returns — so a cache of sealed
    /// secrets in front of the store never answers with a replaced one. Other processes
    /// hear of the change through [`Store::listen_changes`] (PostgreSQL).
    pub fn watch_secret_changes(&self, watch: impl Fn(&InstallationId) + Send + Sync + 'static) {
        self.secret_watchers
            .0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(Box::new(watch));
    }

    /// Tell the watchers, and on PostgreSQL the other nodes, that `id`'s secrets changed.
    pub(crate) async fn secrets_changed(&self, id: &InstallationId) {
        for watch in self
            .secret_watchers
            .0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            watch(id);
        }
        if self.backend == Backend::Postgres {
            let notified = sqlx::query("SELECT pg_notify($1, $2)")
                .bind(crate::drivers::DRIVER_CHANNEL)
                .bind(format!("{}{id}", crate::drivers::INSTALLATION_PREFIX))
                .execute(&self.pool)
                .await;
            if let Err(e) = notified {
                // Other nodes' caches expire on their own (`installation_cache_ttl`).
                tracing::warn!(installation = %id, error = %e, "could not tell the other nodes of a secret change");
            }
        }
    }

    /// A receiver that changes whenever this process commits normalized events, for
    /// readers that wait for new ones (`GET /v1/events?wait=`). Other processes' commits
    /// (PostgreSQL with several nodes) do not show here: such readers also look again
    /// now and then.
    pub fn committed_events(&self) -> tokio::sync::watch::Receiver<u64> {
        self.committed.subscribe()
    }

    /// Which backend this store uses.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Checks that the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// The underlying pool, for queries this crate does not wrap (and for tests).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Run `work` in a task of its own, so that a caller dropped mid-way (client gone,
    /// timeout) cannot cancel it between `BEGIN` and `COMMIT`: a transaction inside always
    /// ends in a commit or a rollback, never in a pooled connection still holding locks.
    pub(crate) async fn detached<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        tokio::spawn(work)
            .await
            .map_err(|e| StoreError::Unavailable(format!("store task failed: {e}")))?
    }

    /// Begins a write transaction; only inside [`Store::detached`] work. On SQLite it is
    /// `BEGIN IMMEDIATE`, which takes the write lock up front instead of upgrading a read
    /// lock later (which can fail at once with `SQLITE_BUSY` when two writers race).
    pub(crate) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_from_url() {
        assert_eq!(Backend::from_url("sqlite://a.db").unwrap(), Backend::Sqlite);
        assert_eq!(
            Backend::from_url("postgres://h/db").unwrap(),
            Backend::Postgres
        );
        assert_eq!(
            Backend::from_url("postgresql://h/db").unwrap(),
            Backend::Postgres
        );
        assert!(matches!(
            Backend::from_url("mysql://x"),
            Err(StoreError::InvalidUrl(_))
        ));
        assert!(Backend::from_url("nonsense").is_err());
    }

    #[test]
    fn sqlite_url_gets_create_mode() {
        let (u, f) = prepare_sqlite_url("sqlite://db.sqlite").unwrap();
        assert_eq!(u, "sqlite://db.sqlite?mode=rwc");
        assert_eq!(f, Some(PathBuf::from("db.sqlite")));
        let (u, _) = prepare_sqlite_url("sqlite:db.sqlite?cache=private").unwrap();
        assert_eq!(u, "sqlite://db.sqlite?cache=private&mode=rwc");
        let (u, _) = prepare_sqlite_url("sqlite://db.sqlite?mode=ro").unwrap();
        assert_eq!(u, "sqlite://db.sqlite?mode=ro");
        let (u, f) = prepare_sqlite_url("sqlite::memory:").unwrap();
        assert_eq!((u.as_str(), f), ("sqlite://:memory:", None));
        assert!(prepare_sqlite_url("sqlite://").is_err());
    }
}
