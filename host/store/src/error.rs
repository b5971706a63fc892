//! The error type of every store operation.

/// Everything that can go wrong in the store.
///
/// Callers map these onto the HTTP contract: [`StoreError::Conflict`] is `409`,
/// [`StoreError::NotFound`] is `404`, the invalid-input variants are `400`/`422`, and the rest
/// are `500` (nothing was stored).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was broken: the installation id is taken (even by a deleted
    /// installation), another live installation of the driver holds the account key, or a
    /// normalized event id already exists. The message says which.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The installation does not exist or was deleted.
    #[error("not found")]
    NotFound,
    /// A secret could not be decrypted: the master key is not the one it was written with,
    /// or the stored row was tampered with or moved to another installation/name.
    #[error("secret could not be decrypted (wrong master key, or the row was altered)")]
    Crypto,
    /// The database URL is neither `sqlite:` nor `postgres:`/`postgresql:`, or is malformed.
    #[error("invalid database url: {0}")]
    InvalidUrl(String),
    /// A malformed id (see [`crate::id`] for each kind's form).
    #[error("invalid {kind} {value:?}")]
    InvalidId {
        /// Which id type, e.g. `InstallationId`.
        kind: &'static str,
        /// The value, cut to 80 characters.
        value: String,
    },
    /// A master key (environment value or key file) that is not 32 bytes of standard base64
    /// or 64 hex characters. The message never contains the key.
    #[error("invalid master key: {0}")]
    InvalidMasterKey(String),
    /// A caller-supplied value the store cannot accept (e.g. a CloudEvent template that is
    /// not a JSON object).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The database cannot be used right now: unreachable, overloaded, locked past the
    /// timeout, or shutting down. Retrying later may succeed (webhooks answer `503`).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Any other database failure.
    #[error("database error: {0}")]
    Database(sqlx::Error),
    /// Applying the schema migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Reading or creating the master key file (or the SQLite file's directory) failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        if is_transient(&err) {
            StoreError::Unavailable(err.to_string())
        } else {
            StoreError::Database(err)
        }
    }
}

/// Whether a database error means "not now" rather than "never": the connection, the pool,
/// a timeout or a lock, as opposed to a constraint or a bug.
fn is_transient(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // SQLite: SQLITE_BUSY (5) and SQLITE_LOCKED (6), with extended codes. PostgreSQL:
            // connection exceptions (08…), insufficient resources (53…), operator
            // intervention (57…: statement timeout 57014, shutdown 57P01…), lock timeout
            // (55P03), serialization failure and deadlock (40001, 40P01).
            let sqlite_busy = code.parse::<i64>().is_ok_and(|c| matches!(c & 0xff, 5 | 6));
            sqlite_busy
                || code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57")
                || matches!(code.as_ref(), "55P03" | "40001" | "40P01")
        }
        _ => false,
    }
}

impl StoreError {
    /// Whether retrying later may succeed (the database was unavailable, not wrong).
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }

    /// Whether a database error is a unique-constraint violation.
    pub(crate) fn is_unique_violation(err: &sqlx::Error) -> bool {
        matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
    }
}
