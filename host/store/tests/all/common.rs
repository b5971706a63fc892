//! Test harness: every behaviour runs on SQLite (a fresh file in a temp dir) and on
//! PostgreSQL when `SLUICE_TEST_POSTGRES_URL` is set (a fresh schema per test, dropped
//! afterwards; selected with the `options=-csearch_path=…` connection parameter).

use rand::Rng;
use sluice_store::{Backend, SecretCipher, Store};
use sqlx::Connection;

/// One isolated database for one test.
pub struct TestDb {
    pub url: String,
    pub backend: Backend,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

impl TestDb {
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        // A nested path: connect must create the directory and the file.
        let path = dir.path().join("data").join("sluice.db");
        TestDb {
            url: format!("sqlite://{}", path.display()),
            backend: Backend::Sqlite,
            _dir: Some(dir),
            pg: None,
        }
    }

    /// `None` when no PostgreSQL server is configured outside CI (the test is skipped and
    /// counted; with `CI` set it fails instead).
    pub async fn postgres() -> Option<TestDb> {
        let base = sluice_testkit::postgres_url()?;
        let suffix: u64 = rand::thread_rng().r#gen();
        let schema = format!("sluice_test_{suffix:016x}");
        let mut conn = sqlx::PgConnection::connect(&base).await.unwrap();
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        let sep = if base.contains('?') { '&' } else { '?' };
        Some(TestDb {
            url: format!("{base}{sep}options=-csearch_path%3D{schema}"),
            backend: Backend::Postgres,
            _dir: None,
            pg: Some((base, schema)),
        })
    }

    pub async fn store(&self) -> Store {
        self.store_with_key([42; 32]).await
    }

    pub async fn store_with_key(&self, key: [u8; 32]) -> Store {
        let store = Store::connect(&self.url, SecretCipher::new(key))
            .await
            .unwrap();
        assert_eq!(store.backend(), self.backend);
        store
    }

    pub async fn cleanup(self) {
        if let Some((base, schema)) = &self.pg {
            let mut conn = sqlx::PgConnection::connect(base).await.unwrap();
            sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                .execute(&mut conn)
                .await
                .unwrap();
            conn.close().await.unwrap();
        }
    }
}

/// Generates, for each named `async fn name(db: &TestDb)`, a module `name` with a `sqlite`
/// and a `postgres` test.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let db = $crate::common::TestDb::sqlite().await;
                super::$name(&db).await;
                db.cleanup().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                if let Some(db) = $crate::common::TestDb::postgres().await {
                    super::$name(&db).await;
                    db.cleanup().await;
                }
            }
        }
    )*};
}

/// A driver id of the tests' own spelling.
pub fn driver(id: &str) -> sluice_store::DriverId {
    sluice_store::DriverId::parse(id).expect("a driver id")
}
