//! The writer: a thread of its own that takes waiting deliveries in batches, commits each
//! batch, and answers every delivery of it.

use std::path::PathBuf;
use std::sync::Arc;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AnyPool, Row};
use tokio::sync::{Mutex, mpsc, oneshot, watch};

use super::batch::Batch;
use super::{CommitOutcome, Delivery, MAX_BATCH};
use crate::StoreError;
use crate::crypto::SecretCipher;

/// Concurrent writers on PostgreSQL (each with its own connection).
pub(crate) const PG_WRITERS: u32 = 3;
/// Deliveries waiting for the writer before senders wait too (backpressure).
const QUEUE: usize = 4 * MAX_BATCH;
/// How often the SQLite WAL is checkpointed. Often, so each checkpoint writes and syncs
/// little: one that syncs a burst's worth of pages into the database file holds up the
/// commits' own syncs behind it on the same filesystem journal (measured on ext4: at
/// 1 s, a 1,000/s load after a burst saw 80–130 ms stalls and a p99 of 86 ms; at 100 ms,
/// a p99 of 3.6 ms).
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// A delivery waiting for the writer, with where its answer goes.
pub(crate) struct Job {
    pub delivery: Delivery,
    pub reply: oneshot::Sender<Result<CommitOutcome, StoreError>>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("installation", &self.delivery.installation_id)
            .finish_non_exhaustive()
    }
}

/// Where a writer commits.
pub(crate) enum Sink {
    /// The store's SQLite pool (one writer), and its database file (none in memory).
    Sqlite(AnyPool, Option<PathBuf>),
    /// A PostgreSQL pool of the writers' own, opened on the writer's thread.
    Postgres(PgPoolOptions, Box<PgConnectOptions>),
}

/// The sending side of a store's writer.
#[derive(Clone, Debug)]
pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Start the writer. It ends when every `Writer` clone is dropped.
    ///
    /// It runs on a thread of its own, so its commits never wait in line behind request
    /// handlers: it is on every delivery's critical path. SQLite has one writer (one write
    /// transaction at a time is all SQLite allows); PostgreSQL has [`PG_WRITERS`], whose
    /// transactions overlap.
    ///
    /// `committed` is bumped after each batch that stored normalized events, so readers
    /// waiting for new events (long-polls) wake.
    pub(crate) fn spawn(
        sink: Sink,
        cipher: SecretCipher,
        committed: Arc<watch::Sender<u64>>,
    ) -> std::io::Result<Writer> {
        let (jobs, queue) = mpsc::channel(QUEUE);
        let alive = jobs.downgrade();
        let queue = Arc::new(Mutex::new(queue));
        std::thread::Builder::new()
            .name("sluice-writer".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start the store's writer");
                        return;
                    }
                };
                runtime.block_on(async move {
                    let (target, writers) = match sink {
                        Sink::Sqlite(pool, file) => {
                            tokio::spawn(checkpoints(pool.clone(), file, alive));
                            (Target::Sqlite(pool), 1)
                        }
                        Sink::Postgres(options, connect) => (
                            Target::Postgres(options.connect_lazy_with(*connect)),
                            PG_WRITERS,
                        ),
                    };
                    let target = Arc::new(target);
                    let loops: Vec<_> = (0..writers)
                        .map(|_| {
                            let (queue, target) = (queue.clone(), target.clone());
                            tokio::spawn(run(queue, target, cipher.clone(), committed.clone()))
                        })
                        .collect();
                    for writer in loops {
                        let _ = writer.await;
                    }
                    if let Target::Postgres(pool) = &*target {
                        pool.close().await;
                    }
                });
            })?;
        Ok(Writer { jobs })
    }

    /// Queue a delivery (waits while the queue is full). Fails if the writer has stopped.
    pub(crate) async fn send(&self, job: Job) -> Result<(), mpsc::error::SendError<Job>> {
        self.jobs.send(job).await
    }
}

/// The pool a writer commits through.
enum Target {
    Sqlite(AnyPool),
    Postgres(PgPool),
}

/// One writer's loop: take what is waiting, commit, answer.
async fn run(
    queue: Arc<Mutex<mpsc::Receiver<Job>>>,
    target: Arc<Target>,
    cipher: SecretCipher,
    committed: Arc<watch::Sender<u64>>,
) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    loop {
        // One writer at a time takes what is waiting; the others commit meanwhile.
        let taken = queue.lock().await.recv_many(&mut jobs, MAX_BATCH).await;
        if taken == 0 {
            return;
        }
        if commit_and_answer(&target, &cipher, std::mem::take(&mut jobs)).await {
            committed.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

/// One transaction for `deliveries`, measured: its size and wall time go to the
/// `sluice_commit_*` metrics (described, with the host's others, in its `metrics`).
async fn commit(
    target: &Target,
    cipher: &SecretCipher,
    deliveries: &[&Delivery],
) -> Result<Vec<Result<CommitOutcome, StoreError>>, StoreError> {
    let started = std::time::Instant::now();
    let batch = Batch::new(deliveries);
    let result = match target {
        Target::Sqlite(pool) => super::sqlite::commit(pool, cipher, &batch).await,
        Target::Postgres(pool) => super::postgres::commit(pool, cipher, &batch).await,
    };
    metrics::histogram!("sluice_commit_batch_size").record(deliveries.len() as f64);
    let outcome = if result.is_ok() { "ok" } else { "error" };
    metrics::histogram!("sluice_commit_duration_seconds", "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
    result
}

/// Whether normalized events were stored.
async fn commit_and_answer(target: &Target, cipher: &SecretCipher, jobs: Vec<Job>) -> bool {
    let stored_events =
        |o: &Result<CommitOutcome, StoreError>| o.as_ref().is_ok_and(|o| o.events > 0);
    let mut any = false;
    let deliveries: Vec<&Delivery> = jobs.iter().map(|j| &j.delivery).collect();
    let started = std::time::Instant::now();
    let result = commit(target, cipher, &deliveries).await;
    tracing::debug!(
        deliveries = deliveries.len(),
        micros = started.elapsed().as_micros() as u64,
        ok = result.is_ok(),
        "batch committed"
    );
    match result {
        Ok(outcomes) => {
            for (job, outcome) in jobs.into_iter().zip(outcomes) {
                any |= stored_events(&outcome);
                let _ = job.reply.send(outcome);
            }
        }
        // The database is not usable: every delivery of the batch gets that answer.
        Err(e) if e.is_transient() || jobs.len() == 1 => {
            let message = e.to_string();
            let mut jobs = jobs.into_iter();
            if let Some(first) = jobs.next() {
                let _ = first.reply.send(Err(e));
            }
            for job in jobs {
                let _ = job
                    .reply
                    .send(Err(StoreError::Unavailable(message.clone())));
            }
        }
        // One delivery spoiled the batch: commit each on its own, so it alone fails.
        Err(e) => {
            tracing::debug!(error = %e, deliveries = jobs.len(), "batch failed; committing its deliveries one by one");
            for job in jobs {
                let outcome = commit(target, cipher, &[&job.delivery])
                    .await
                    .and_then(|o| {
                        o.into_iter().next().unwrap_or_else(|| {
                            Err(StoreError::Unavailable("the commit gave no answer".into()))
                        })
                    });
                any |= stored_events(&outcome);
                let _ = job.reply.send(outcome);
            }
        }
    }
    any
}

/// Checkpoint the SQLite WAL in the background (automatic checkpoints are off, see
/// `Store::connect_with`), passively: it never blocks the writer. Stops with the store.
///
/// After each checkpoint that copied pages, the database file is synced too. SQLite syncs
/// it only when a checkpoint catches up with the whole WAL, which under steady load is
/// not until the load ends — by then the file holds a burst's worth of unsynced pages,
/// and that one big sync stalls every commit's sync behind it. Small syncs as it goes
/// cost the same writes without the stall.
async fn checkpoints(pool: AnyPool, file: Option<PathBuf>, store: mpsc::WeakSender<Job>) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let file = match file.map(std::fs::File::open).transpose() {
        Ok(file) => file.map(Arc::new),
        Err(e) => {
            tracing::warn!(error = %e, "cannot open the database file to sync it after checkpoints");
            None
        }
    };
    let mut last_copied = 0;
    loop {
        tick.tick().await;
        if store.upgrade().is_none() || pool.is_closed() {
            return;
        }
        // (busy, frames in the WAL, frames copied into the database)
        let copied = match sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&pool)
            .await
            .and_then(|row| row.try_get::<i64, _>(2))
        {
            Ok(copied) => copied,
            Err(e) => {
                tracing::debug!(error = %e, "WAL checkpoint failed; retrying later");
                continue;
            }
        };
        if copied != last_copied
            && let Some(file) = &file
        {
            last_copied = copied;
            let file = file.clone();
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || file.sync_data()).await {
                tracing::debug!(error = %e, "syncing the database file failed; retrying later");
            }
        }
    }
}
