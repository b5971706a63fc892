//! The output format: normalized events as CloudEvents 1.0 JSON.
//!
//! Every path to consumers renders events here (the cursor API, outbound webhooks, the
//! NATS sink), from what the store keeps: the event's own attributes and record, and the
//! provenance of the raw event it came from. Sluice's extension attributes:
//!
//! | attribute | value |
//! |---|---|
//! | `sluiceinstallation` | the installation id |
//! | `sluicedriver`, `sluicedriverversion` | the driver that normalized it |
//! | `sluiceprovidereventid`, `sluiceprovidereventtype` | the provider's id and type of the raw event |
//! | `sluicerawevent` | the id of the stored raw event it came from, as text |
//!
//! Event ids are [`sluice_store::EventId`] (`evt_…`, time-ordered); consumers deduplicate
//! on them.

use std::fmt::Write as _;

use sluice_store::{InstallationId, StoredEvent};

/// The CloudEvents spec version we emit.
pub const SPEC_VERSION: &str = "1.0";

/// The CloudEvent `source` of an installation's events.
pub fn source(installation: &InstallationId) -> String {
    format!("/sluice/installations/{installation}")
}

/// The CloudEvent JSON text of a stored event. The record is spliced in as stored.
pub fn cloud_event(e: &StoredEvent) -> String {
    let mut out = String::with_capacity(e.data.len() + 512);
    out.push('{');
    attribute(&mut out, "specversion", SPEC_VERSION);
    attribute(&mut out, "id", e.id.as_str());
    attribute(&mut out, "source", &source(&e.installation_id));
    attribute(&mut out, "type", &e.event_type);
    match &e.subject {
        Some(subject) => attribute(&mut out, "subject", subject),
        None => out.push_str("\"subject\":null,"),
    }
    attribute(&mut out, "time", &e.time);
    attribute(&mut out, "datacontenttype", "application/json");
    attribute(&mut out, "sluiceinstallation", e.installation_id.as_str());
    attribute(&mut out, "sluicedriver", e.driver_id.as_str());
    attribute(&mut out, "sluicedriverversion", &e.driver_version);
    attribute(&mut out, "sluiceprovidereventid", &e.provider_event_id);
    attribute(&mut out, "sluiceprovidereventtype", &e.provider_event_type);
    let _ = write!(out, "\"sluicerawevent\":\"{}\",", e.raw_event_id);
    out.push_str("\"data\":");
    out.push_str(&e.data);
    out.push('}');
    out
}

/// `"name":"value",` with the value JSON-escaped.
fn attribute(out: &mut String, name: &str, value: &str) {
    out.push('"');
    out.push_str(name);
    out.push_str("\":");
    // Serialising a `&str` cannot fail.
    out.push_str(&serde_json::to_string(value).unwrap_or_default());
    out.push(',');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use sluice_store::EventId;

    #[test]
    fn renders_every_attribute_and_splices_the_record() {
        let id = EventId::generate();
        let event = StoredEvent {
            cursor: sluice_store::Cursor::parse("7").expect("a cursor"),
            id: id.clone(),
            installation_id: InstallationId::parse("inst_a").unwrap(),
            event_type: "payment.succeeded".into(),
            subject: Some("ch_\"1".into()),
            time: "2024-01-02T03:04:05Z".into(),
            data: r#"{"kind":"payment","amount":{"amount_minor":5,"currency":"USD"}}"#.into(),
            raw_event_id: 42,
            driver_id: sluice_store::DriverId::parse("stripe").unwrap(),
            driver_version: "0.2.0".into(),
            provider_event_id: "evt_1".into(),
            provider_event_type: "charge.succeeded".into(),
        };
        let parsed: Value = serde_json::from_str(&cloud_event(&event)).unwrap();
        assert_eq!(
            parsed,
            json!({
                "specversion": "1.0",
                "id": id.as_str(),
                "source": "/sluice/installations/inst_a",
                "type": "payment.succeeded",
                "subject": "ch_\"1",
                "time": "2024-01-02T03:04:05Z",
                "datacontenttype": "application/json",
                "sluiceinstallation": "inst_a",
                "sluicedriver": "stripe",
                "sluicedriverversion": "0.2.0",
                "sluiceprovidereventid": "evt_1",
                "sluiceprovidereventtype": "charge.succeeded",
                "sluicerawevent": "42",
                "data": {"kind": "payment", "amount": {"amount_minor": 5, "currency": "USD"}},
            })
        );
        let no_subject = StoredEvent {
            subject: None,
            ..event
        };
        let parsed: Value = serde_json::from_str(&cloud_event(&no_subject)).unwrap();
        assert_eq!(parsed["subject"], Value::Null);
    }
}
