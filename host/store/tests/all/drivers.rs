//! Driver versions on both backends: kept once by sha256 with their bytes, the activation
//! history and rollback's "previous", removal refused while active or pinned, pins only
//! to the installation's own driver's versions, and PostgreSQL's change notifications.

use crate::common::TestDb;
use crate::store::install;
use sluice_store::{
    ActivationReason, Backend, DriverSource, NewDriverVersion, RemoveRefused, Store, StoreError,
};

both_backends!(versions_activations_and_rollback, removal_and_pins);

fn version<'a>(
    sha: &'a str,
    driver: &'a sluice_store::DriverId,
    v: &'a str,
    bytes: &'a [u8],
) -> NewDriverVersion<'a> {
    NewDriverVersion {
        sha256: sha,
        driver_id: driver,
        version: v,
        wit_version: "0.6.0",
        component: bytes,
        source: DriverSource::Upload,
    }
}

async fn keep_two(store: &Store) {
    assert!(
        store
            .put_driver_version(version(
                "aa",
                &crate::common::driver("stripe"),
                "0.1.0",
                b"one"
            ))
            .await
            .unwrap()
    );
    assert!(
        store
            .put_driver_version(version(
                "bb",
                &crate::common::driver("stripe"),
                "0.2.0",
                b"two"
            ))
            .await
            .unwrap()
    );
}

async fn versions_activations_and_rollback(db: &TestDb) {
    let store = db.store().await;
    keep_two(&store).await;
    // The same bytes again: kept already, the first record stands.
    let stripe = crate::common::driver("stripe");
    let again = NewDriverVersion {
        source: DriverSource::Directory,
        ..version("aa", &stripe, "0.1.0", b"one")
    };
    assert!(!store.put_driver_version(again).await.unwrap());
    assert_eq!(
        store.driver_component("aa").await.unwrap().as_deref(),
        Some(&b"one"[..])
    );
    assert_eq!(store.driver_component("zz").await.unwrap(), None);
    let kept = store.driver_version("aa").await.unwrap().unwrap();
    assert_eq!(
        (kept.source.as_str(), kept.size_bytes, kept.active),
        ("upload", 3, false)
    );

    assert_eq!(store.active_driver_versions().await.unwrap(), vec![]);
    assert_eq!(
        store
            .previous_driver_version(&crate::common::driver("stripe"))
            .await
            .unwrap(),
        None
    );
    // Only a version of that driver can be activated.
    assert!(matches!(
        store
            .activate_driver_version(
                &crate::common::driver("shopify"),
                "aa",
                ActivationReason::Activate
            )
            .await,
        Err(StoreError::NotFound)
    ));
    store
        .activate_driver_version(
            &crate::common::driver("stripe"),
            "aa",
            ActivationReason::Directory,
        )
        .await
        .unwrap();
    store
        .activate_driver_version(
            &crate::common::driver("stripe"),
            "bb",
            ActivationReason::Upload,
        )
        .await
        .unwrap();
    assert_eq!(
        store.active_driver_versions().await.unwrap(),
        vec![(crate::common::driver("stripe"), "bb".to_string())]
    );
    assert_eq!(
        store
            .previous_driver_version(&crate::common::driver("stripe"))
            .await
            .unwrap()
            .as_deref(),
        Some("aa")
    );
    // Rolling back is an activation too: "previous" is then the version rolled back from.
    store
        .activate_driver_version(
            &crate::common::driver("stripe"),
            "aa",
            ActivationReason::Rollback,
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .previous_driver_version(&crate::common::driver("stripe"))
            .await
            .unwrap()
            .as_deref(),
        Some("bb")
    );
    let listed: Vec<(String, bool)> = store
        .driver_versions(Some(&crate::common::driver("stripe")))
        .await
        .unwrap()
        .into_iter()
        .map(|v| (v.sha256, v.active))
        .collect();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(sorted, vec![("aa".into(), true), ("bb".into(), false)]);
    assert!(
        store
            .driver_versions(Some(&crate::common::driver("shopify")))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.driver_versions(None).await.unwrap().len(), 2);
}

async fn removal_and_pins(db: &TestDb) {
    let store = db.store().await;
    keep_two(&store).await;
    store
        .put_driver_version(version(
            "cc",
            &crate::common::driver("shopify"),
            "0.1.0",
            b"three",
        ))
        .await
        .unwrap();
    store
        .activate_driver_version(
            &crate::common::driver("stripe"),
            "aa",
            ActivationReason::Directory,
        )
        .await
        .unwrap();
    store
        .activate_driver_version(
            &crate::common::driver("stripe"),
            "bb",
            ActivationReason::Upload,
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .previous_driver_version(&crate::common::driver("stripe"))
            .await
            .unwrap()
            .as_deref(),
        Some("aa")
    );
    let inst = install(&store, "inst_pinned", "stripe", None).await;

    // On PostgreSQL every pin and activation is announced on the channel.
    let mut changes = store.listen_changes().await.unwrap();
    assert_eq!(changes.is_some(), db.backend == Backend::Postgres);

    // A pin names a kept version of the installation's own driver.
    assert!(matches!(
        store.pin_installation(&inst, Some("cc")).await,
        Err(StoreError::InvalidInput(_))
    ));
    assert!(matches!(
        store.pin_installation(&inst, Some("zz")).await,
        Err(StoreError::InvalidInput(_))
    ));
    let unknown = sluice_store::InstallationId::parse("inst_nobody").unwrap();
    assert!(matches!(
        store.pin_installation(&unknown, Some("aa")).await,
        Err(StoreError::NotFound)
    ));
    store.pin_installation(&inst, Some("aa")).await.unwrap();
    if let Some(changes) = changes.as_mut() {
        let driver = tokio::time::timeout(std::time::Duration::from_secs(5), changes.next())
            .await
            .expect("a notification within 5 s")
            .unwrap();
        assert_eq!(
            driver,
            Some(sluice_store::Change::Driver(crate::common::driver(
                "stripe"
            )))
        );
    }
    let installation = store.get_installation(&inst).await.unwrap().unwrap();
    assert_eq!(installation.driver_sha256.as_deref(), Some("aa"));
    assert_eq!(
        store.pinned_driver_versions().await.unwrap(),
        vec!["aa".to_string()]
    );
    assert_eq!(
        store
            .driver_version("aa")
            .await
            .unwrap()
            .unwrap()
            .pinned_installations,
        1
    );

    assert_eq!(
        store
            .remove_driver_version(&crate::common::driver("stripe"), "bb")
            .await
            .unwrap(),
        Err(RemoveRefused::Active)
    );
    assert_eq!(
        store
            .remove_driver_version(&crate::common::driver("stripe"), "aa")
            .await
            .unwrap(),
        Err(RemoveRefused::Pinned(1))
    );
    assert!(matches!(
        store
            .remove_driver_version(&crate::common::driver("shopify"), "aa")
            .await,
        Err(StoreError::NotFound)
    ));
    store.pin_installation(&inst, None).await.unwrap();
    assert!(store.pinned_driver_versions().await.unwrap().is_empty());
    assert_eq!(
        store
            .remove_driver_version(&crate::common::driver("stripe"), "aa")
            .await
            .unwrap(),
        Ok(())
    );
    assert_eq!(store.driver_component("aa").await.unwrap(), None);
    // Its activations went with it: nothing earlier to roll back to.
    assert_eq!(
        store
            .previous_driver_version(&crate::common::driver("stripe"))
            .await
            .unwrap(),
        None
    );
}
