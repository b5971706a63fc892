//! A delivery's writes — driver state and captured secrets — applied inside the batch's
//! transaction, the same statements on both backends.

use sqlx::{Database, Encode, Executor, IntoArguments, Type};

use super::{Delivery, StateWrite};
use crate::StoreError;
use crate::crypto::SecretCipher;
use crate::store::now_rfc3339;

/// Upsert of one driver state key.
const SET_STATE: &str = "INSERT INTO driver_state (installation_id, key, value, updated_at) \
     VALUES ($1, $2, $3, $4) \
     ON CONFLICT (installation_id, key) \
     DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at";
/// Removal of one driver state key.
const DELETE_STATE: &str = "DELETE FROM driver_state WHERE installation_id = $1 AND key = $2";
/// Upsert of one encrypted secret; a captured value ends any rotation grace.
const SET_SECRET: &str = "INSERT INTO secrets (installation_id, name, ciphertext, updated_at) \
     VALUES ($1, $2, $3, $4) \
     ON CONFLICT (installation_id, name) \
     DO UPDATE SET ciphertext = excluded.ciphertext, updated_at = excluded.updated_at, \
       previous_ciphertext = NULL, previous_until = NULL";
/// One secret audit entry: installation, name, action, time.
pub(crate) const AUDIT_SECRET: &str =
    "INSERT INTO secret_audit (installation_id, name, action, at) VALUES ($1, $2, $3, $4)";

/// Apply `d`'s state changes and captured secrets on `conn` (a connection inside the
/// batch's transaction: SQLite's `Any` one, PostgreSQL's own).
pub(super) async fn apply<DB>(
    conn: &mut DB::Connection,
    cipher: &SecretCipher,
    d: &Delivery,
) -> Result<(), StoreError>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> Vec<u8>: Encode<'q, DB> + Type<DB>,
{
    let id = d.installation_id.to_string();
    for write in &d.writes.state {
        match write {
            StateWrite::Set { key, value } => {
                sqlx::query::<DB>(SET_STATE)
                    .bind(id.clone())
                    .bind(key.clone())
                    .bind(value.clone())
                    .bind(now_rfc3339())
                    .execute(&mut *conn)
                    .await?;
            }
            StateWrite::Delete { key } => {
                sqlx::query::<DB>(DELETE_STATE)
                    .bind(id.clone())
                    .bind(key.clone())
                    .execute(&mut *conn)
                    .await?;
            }
        }
    }
    for (name, value) in &d.writes.secrets {
        let ciphertext = cipher.encrypt(&d.installation_id, name, value.expose())?;
        let now = now_rfc3339();
        sqlx::query::<DB>(SET_SECRET)
            .bind(id.clone())
            .bind(name.clone())
            .bind(ciphertext)
            .bind(now.clone())
            .execute(&mut *conn)
            .await?;
        sqlx::query::<DB>(AUDIT_SECRET)
            .bind(id.clone())
            .bind(name.clone())
            .bind(crate::secrets::SecretAction::Captured.as_str().to_string())
            .bind(now)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}
