//! The PostgreSQL commit: a batch of any size is one statement over arrays — always the
//! same text, so it is prepared once per connection and planned once — and one round
//! trip. A batch that writes driver state or secrets wraps it in a transaction with them.
//!
//! The statement checks which installations are live, inserts the raw events of live
//! ones (`ON CONFLICT DO NOTHING` deduplicates against what is stored), and inserts the
//! normalized events of exactly the raw events it inserted. Its data-modifying parts run
//! once each, to completion, in one snapshot, and commit together.

use std::collections::{HashMap, HashSet};

use sqlx::postgres::PgPool;
use sqlx::{Connection, PgConnection, Row};

use super::CommitOutcome;
use super::batch::{Batch, Key};
use crate::StoreError;
use crate::crypto::SecretCipher;

/// `$1` the installations; `$2..$13` the raw events' columns, in key order; `$14..$20` the
/// normalized events' columns, in log order, each with its raw event's key. Answers one
/// row per live installation (kind 0) and per inserted raw event (kind 1).
const COMMIT: &str = "\
WITH live AS (
    SELECT id FROM installations WHERE deleted_at IS NULL AND id = ANY($1::text[])
),
raw AS (
    INSERT INTO raw_events (installation_id, provider_event_id, event_type, account_key,
        driver_id, driver_version, received_at, payload, status, failure_reason, content_sha256,
        api_version)
    SELECT r.installation_id, r.provider_event_id, r.event_type, r.account_key, r.driver_id,
        r.driver_version, r.received_at, r.payload, r.status, r.failure_reason, r.content_sha256,
        r.api_version
    FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
            $8::text[], $9::bytea[], $10::text[], $11::text[], $12::bytea[], $13::text[])
        WITH ORDINALITY AS r(installation_id, provider_event_id, event_type, account_key,
            driver_id, driver_version, received_at, payload, status, failure_reason,
            content_sha256, api_version, n)
    WHERE r.installation_id IN (SELECT id FROM live)
    ORDER BY r.n
    ON CONFLICT DO NOTHING
    RETURNING id, installation_id, provider_event_id
),
normalized AS (
    INSERT INTO events (id, installation_id, raw_event_id, type, subject, time, data)
    SELECT e.id, e.installation_id, raw.id, e.type, e.subject, e.time, e.data
    FROM unnest($14::text[], $15::text[], $16::text[], $17::text[], $18::text[],
            $19::text[], $20::text[])
        WITH ORDINALITY AS e(id, installation_id, provider_event_id, type, subject, time,
            data, n)
    JOIN raw ON raw.installation_id = e.installation_id
        AND raw.provider_event_id = e.provider_event_id
    ORDER BY e.n
)
SELECT 0, id, NULL::text, NULL::bigint FROM live
UNION ALL
SELECT 1, installation_id, provider_event_id, id FROM raw";

/// Commit a batch. The outer error fails the whole batch; an inner one is a delivery's
/// own answer (its installation is gone) that wrote nothing.
pub(super) async fn commit(
    pool: &PgPool,
    cipher: &SecretCipher,
    batch: &Batch<'_>,
) -> Result<Vec<Result<CommitOutcome, StoreError>>, StoreError> {
    let mut conn = pool.acquire().await?;
    if batch.deliveries.iter().all(|d| d.writes.is_empty()) {
        let (live, inserted) = run(&mut conn, batch).await?;
        return Ok(batch.outcomes(&live, &inserted));
    }
    let mut tx = conn.begin().await?;
    let (live, inserted) = run(&mut tx, batch).await?;
    let outcomes = batch.outcomes(&live, &inserted);
    for d in batch.writes_to_apply(&outcomes) {
        super::writes::apply::<sqlx::Postgres>(&mut tx, cipher, d).await?;
    }
    tx.commit().await?;
    Ok(outcomes)
}

/// Run [`COMMIT`]: the live installations, and the row id of each inserted raw event.
async fn run<'a>(
    conn: &mut PgConnection,
    batch: &Batch<'a>,
) -> Result<(HashSet<String>, HashMap<Key<'a>, i64>), StoreError> {
    let rows = batch.rows_in_key_order(None);
    let mut raw = RawColumns::default();
    for row in &rows {
        let (status, reason) = row.status();
        raw.installation.push(row.d.installation_id.as_str());
        raw.provider_event_id.push(&row.event.provider_event_id);
        raw.event_type.push(&row.event.event_type);
        raw.account_key.push(row.event.account_key.as_deref());
        raw.driver_id.push(row.d.driver_id.as_str());
        raw.driver_version.push(&row.d.driver_version);
        raw.received_at.push(&row.d.received_at);
        raw.payload.push(&row.event.payload);
        raw.status.push(status);
        raw.reason.push(reason);
        raw.content.push(row.content.as_slice());
        raw.api_version.push(row.event.api_version.as_deref());
    }
    let mut events = EventColumns::default();
    for row in &batch.rows {
        let super::NormalizeOutcome::Normalized(list) = &row.event.outcome else {
            continue;
        };
        for e in list {
            events.id.push(e.event_id.as_str());
            events.installation.push(row.d.installation_id.as_str());
            events.provider_event_id.push(&row.event.provider_event_id);
            events.event_type.push(&e.event_type);
            events.subject.push(e.subject.as_deref());
            events.time.push(&e.time);
            events.data.push(&e.data);
        }
    }
    let answer = sqlx::query(COMMIT)
        .bind(batch.installation_ids())
        .bind(raw.installation)
        .bind(raw.provider_event_id)
        .bind(raw.event_type)
        .bind(raw.account_key)
        .bind(raw.driver_id)
        .bind(raw.driver_version)
        .bind(raw.received_at)
        .bind(raw.payload)
        .bind(raw.status)
        .bind(raw.reason)
        .bind(raw.content)
        .bind(raw.api_version)
        .bind(events.id)
        .bind(events.installation)
        .bind(events.provider_event_id)
        .bind(events.event_type)
        .bind(events.subject)
        .bind(events.time)
        .bind(events.data)
        .fetch_all(&mut *conn)
        .await
        .map_err(super::event_id_conflict)?;

    let position: HashMap<Key<'_>, usize> =
        rows.iter().enumerate().map(|(i, r)| (r.key(), i)).collect();
    let mut live = HashSet::new();
    let mut inserted = HashMap::with_capacity(rows.len());
    for row in answer {
        let kind: i32 = row.try_get(0)?;
        let installation: String = row.try_get(1)?;
        if kind == 0 {
            live.insert(installation);
            continue;
        }
        let provider_event_id: String = row.try_get(2)?;
        let raw_id: i64 = row.try_get(3)?;
        if let Some(&i) = position.get(&(installation.as_str(), provider_event_id.as_str())) {
            inserted.insert(rows[i].key(), raw_id);
        }
    }
    Ok((live, inserted))
}

/// The raw events' columns, borrowed from the batch.
#[derive(Default)]
struct RawColumns<'a> {
    installation: Vec<&'a str>,
    provider_event_id: Vec<&'a str>,
    event_type: Vec<&'a str>,
    account_key: Vec<Option<&'a str>>,
    driver_id: Vec<&'a str>,
    driver_version: Vec<&'a str>,
    received_at: Vec<&'a str>,
    payload: Vec<&'a [u8]>,
    status: Vec<&'a str>,
    reason: Vec<Option<&'a str>>,
    content: Vec<&'a [u8]>,
    api_version: Vec<Option<&'a str>>,
}

/// The normalized events' columns, borrowed from the batch.
#[derive(Default)]
struct EventColumns<'a> {
    id: Vec<&'a str>,
    installation: Vec<&'a str>,
    provider_event_id: Vec<&'a str>,
    event_type: Vec<&'a str>,
    subject: Vec<Option<&'a str>>,
    time: Vec<&'a str>,
    data: Vec<&'a str>,
}
