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
    /// Any other database failure.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying the schema migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Reading or creating the master key file (or the SQLite file's directory) failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl StoreError {
    /// Whether a database error is a unique-constraint violation.
    pub(crate) fn is_unique_violation(err: &sqlx::Error) -> bool {
        matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
    }

    /// Whether a database error is a foreign-key violation.
    pub(crate) fn is_foreign_key_violation(err: &sqlx::Error) -> bool {
        matches!(err, sqlx::Error::Database(db) if db.is_foreign_key_violation())
    }
}
