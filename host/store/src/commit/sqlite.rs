//! The SQLite commit: one `BEGIN IMMEDIATE` transaction per batch through the `Any` pool,
//! multi-row inserts.

use std::collections::{HashMap, HashSet};

use sqlx::{Any, AnyPool, Row, Transaction};

use super::batch::{Batch, Key, RawRow};
use super::{CommitOutcome, NewEvent};
use crate::crypto::SecretCipher;
use crate::{InstallationId, StoreError};

/// Raw-event rows per `INSERT` (10 parameters each, far under SQLite's 32766).
const RAW_ROWS_PER_INSERT: usize = 500;
/// Event rows per `INSERT` (7 parameters each).
const EVENT_ROWS_PER_INSERT: usize = 1000;

/// Commit a batch in one transaction. The outer error fails the transaction; an inner one
/// is a delivery's own answer (its installation is gone) that wrote nothing.
pub(super) async fn commit(
    pool: &AnyPool,
    cipher: &SecretCipher,
    batch: &Batch<'_>,
) -> Result<Vec<Result<CommitOutcome, StoreError>>, StoreError> {
    // Take the write lock up front instead of upgrading a read lock later.
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let live = live_installations(&mut tx, batch).await?;
    let inserted = insert_raw_events(&mut tx, &batch.rows_in_key_order(Some(&live))).await?;
    insert_events(&mut tx, &batch.new_events(&inserted)).await?;
    let outcomes = batch.outcomes(&live, &inserted);
    for d in batch.writes_to_apply(&outcomes) {
        super::writes::apply::<Any>(&mut tx, cipher, d).await?;
    }
    tx.commit().await?;
    Ok(outcomes)
}

/// Which of the batch's installations are live.
async fn live_installations(
    tx: &mut Transaction<'static, Any>,
    batch: &Batch<'_>,
) -> Result<HashSet<String>, StoreError> {
    let ids = batch.installation_ids();
    let sql = format!(
        "SELECT id FROM installations WHERE deleted_at IS NULL AND id IN {}",
        placeholders(1, ids.len())
    );
    let mut query = sqlx::query(&sql);
    for id in ids {
        query = query.bind(id);
    }
    let rows = query.fetch_all(&mut **tx).await?;
    rows.iter()
        .map(|r| r.try_get::<String, _>(0).map_err(StoreError::from))
        .collect()
}

/// Insert raw events, skipping those already stored; returns the row id of each inserted
/// one by key.
async fn insert_raw_events<'a>(
    tx: &mut Transaction<'static, Any>,
    rows: &[&RawRow<'a>],
) -> Result<HashMap<Key<'a>, i64>, StoreError> {
    let mut inserted = HashMap::with_capacity(rows.len());
    for chunk in rows.chunks(RAW_ROWS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO raw_events (installation_id, provider_event_id, event_type, \
             account_key, driver_id, driver_version, received_at, payload, status, \
             failure_reason, content_sha256, api_version) VALUES {} \
             ON CONFLICT DO NOTHING \
             RETURNING id, installation_id, provider_event_id",
            placeholders(chunk.len(), 12)
        );
        let mut query = sqlx::query(&sql);
        for row in chunk {
            let (status, reason) = row.status();
            query = query
                .bind(row.d.installation_id.as_str())
                .bind(row.event.provider_event_id.as_str())
                .bind(row.event.event_type.as_str())
                .bind(row.event.account_key.as_deref())
                .bind(row.d.driver_id.as_str())
                .bind(row.d.driver_version.as_str())
                .bind(row.d.received_at.as_str())
                .bind(row.event.payload.as_slice())
                .bind(status)
                .bind(reason)
                .bind(row.content.as_slice())
                .bind(row.event.api_version.as_deref());
        }
        let returned = query.fetch_all(&mut **tx).await?;
        // RETURNING order is not guaranteed: match rows by their key.
        let by_key: HashMap<Key<'a>, &RawRow<'a>> = chunk.iter().map(|r| (r.key(), *r)).collect();
        for row in returned {
            let id: i64 = row.try_get(0)?;
            let installation: String = row.try_get(1)?;
            let provider_event_id: String = row.try_get(2)?;
            if let Some(r) = by_key.get(&(installation.as_str(), provider_event_id.as_str())) {
                inserted.insert(r.key(), id);
            }
        }
    }
    Ok(inserted)
}

/// Insert normalized events.
async fn insert_events(
    tx: &mut Transaction<'static, Any>,
    events: &[(i64, &InstallationId, &NewEvent)],
) -> Result<(), StoreError> {
    for chunk in events.chunks(EVENT_ROWS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO events (id, installation_id, raw_event_id, type, subject, time, data) \
             VALUES {}",
            placeholders(chunk.len(), 7)
        );
        let mut query = sqlx::query(&sql);
        for (raw_id, installation, e) in chunk {
            query = query
                .bind(e.event_id.as_str())
                .bind(installation.as_str())
                .bind(*raw_id)
                .bind(e.event_type.as_str())
                .bind(e.subject.as_deref())
                .bind(e.time.as_str())
                .bind(e.data.as_str());
        }
        query
            .execute(&mut **tx)
            .await
            .map_err(super::event_id_conflict)?;
    }
    Ok(())
}

/// `(?, ?), (?, ?)` for 2 rows of 2 columns. Anonymous, not `$n`: SQLite looks a numbered
/// parameter's name up in a list, and sqlx looks up every parameter's name when it binds,
/// which makes binding a statement of thousands of `$n` quadratic.
fn placeholders(rows: usize, columns: usize) -> String {
    let mut one = String::with_capacity(columns * 3);
    one.push('(');
    for column in 0..columns {
        one.push_str(if column == 0 { "?" } else { ", ?" });
    }
    one.push(')');
    let mut out = String::with_capacity(rows * (one.len() + 2));
    for row in 0..rows {
        if row > 0 {
            out.push_str(", ");
        }
        out.push_str(&one);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::placeholders;

    #[test]
    fn anonymous_placeholders() {
        assert_eq!(placeholders(2, 3), "(?, ?, ?), (?, ?, ?)");
        assert_eq!(placeholders(1, 1), "(?)");
    }
}
