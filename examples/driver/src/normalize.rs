//! Acme events → canonical records.

use sluice_sdk::canonical::{
    CanonicalRecord, Change, Payment, PaymentStatus, RecordData, Refund, RefundStatus, Unmapped,
};
use sluice_sdk::json::{Value, id_field, serde_json, str_field, string_field};
use sluice_sdk::money;

use crate::webhook;

/// Map one event's payload. Types Acme may add later become `unmapped`; an error means an
/// event we claim to understand could not be read (the host keeps it as a dead letter).
pub fn normalize(payload: &[u8]) -> Result<Vec<CanonicalRecord>, String> {
    let event: Value =
        serde_json::from_slice(payload).map_err(|e| format!("payload is not JSON: {e}"))?;
    let event_type = str_field(&event, "type").unwrap_or_default();
    let data = match event_type {
        "payment.completed" | "payment.refunded" => {
            let payment = event.get("payment").ok_or("event has no payment")?;
            // Integer ids can exceed 2^53: `id_field` keeps their exact decimal text.
            let payment_id = id_field(payment, "id").ok_or("payment has no id")?;
            let amount = money::money_from_decimal_str(
                str_field(payment, "amount").ok_or("payment.amount is not a decimal string")?,
                str_field(payment, "currency").ok_or("payment has no currency")?,
            )
            .map_err(|e| e.to_string())?;
            // Acme sends one timestamp: when the event happened.
            let created_at = webhook::created_at(&event)?;
            if event_type == "payment.completed" {
                RecordData::Payment(Payment {
                    external_id: payment_id,
                    amount,
                    status: PaymentStatus::Succeeded,
                    status_raw: event_type.into(),
                    created_at,
                    order_external_id: None,
                    customer_external_id: None,
                    invoice_external_id: None,
                    amount_captured: None,
                    amount_refunded: None,
                    fee: None,
                    method: None,
                    description: None,
                    failure_reason: None,
                    metadata: Vec::new(),
                })
            } else {
                // A refund has no id of its own at Acme: the event id stands for it.
                RecordData::Refund(Refund {
                    external_id: string_field(&event, "id").ok_or("event has no id")?,
                    payment_external_id: Some(payment_id),
                    amount,
                    status: RefundStatus::Succeeded,
                    status_raw: event_type.into(),
                    created_at,
                    order_external_id: None,
                    customer_external_id: None,
                    reason: None,
                    metadata: Vec::new(),
                })
            }
        }
        // Acme's types read `<object>.<verb>`.
        other => RecordData::Unmapped(Unmapped {
            external_id: event.get("payment").and_then(|p| id_field(p, "id")),
            object_type: other
                .split('.')
                .next()
                .filter(|o| !o.is_empty())
                .map(Into::into),
            reason: None,
        }),
    };
    Ok(vec![sluice_sdk::record::record(Change::Observed, data)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::Money;

    fn event(event_type: &str, amount: &str, currency: &str) -> Vec<u8> {
        format!(
            r#"{{"id":"ev_1","type":"{event_type}","created_at":"2025-03-01T12:00:00+01:00",
                "payment":{{"id":9007199254740993,"amount":"{amount}","currency":"{currency}"}}}}"#
        )
        .into_bytes()
    }

    fn one(payload: &[u8]) -> RecordData {
        let mut records = normalize(payload).unwrap();
        assert_eq!(records.len(), 1);
        let record = records.remove(0);
        assert_eq!(record.change, Change::Observed);
        record.data
    }

    #[test]
    fn completed_payment() {
        let RecordData::Payment(p) = one(&event("payment.completed", "12.34", "eur")) else {
            panic!("not a payment");
        };
        assert_eq!(p.external_id, "9007199254740993"); // 2^53 + 1, not ...992
        assert_eq!(
            p.amount,
            Money {
                amount_minor: 1234,
                currency: "EUR".into(),
                exact: None,
            }
        );
        assert_eq!(p.status, PaymentStatus::Succeeded);
        assert_eq!(p.status_raw, "payment.completed");
        assert_eq!(p.created_at.map(|t| t.seconds), Some(1_740_826_800));
        assert_eq!((p.fee, p.method, p.metadata), (None, None, vec![]));
    }

    #[test]
    fn refund_in_yen() {
        let RecordData::Refund(r) = one(&event("payment.refunded", "1500", "jpy")) else {
            panic!("not a refund");
        };
        assert_eq!(r.external_id, "ev_1");
        assert_eq!(r.payment_external_id.as_deref(), Some("9007199254740993"));
        assert_eq!(
            r.amount,
            Money {
                amount_minor: 1500,
                currency: "JPY".into(),
                exact: None,
            }
        );
        assert_eq!(
            (r.status, r.status_raw.as_str()),
            (RefundStatus::Succeeded, "payment.refunded")
        );
        // JPY has no minor unit: a fraction is rounded half to even, and kept exactly.
        let RecordData::Payment(p) = one(&event("payment.completed", "1500.5", "jpy")) else {
            panic!("not a payment");
        };
        assert_eq!(
            (p.amount.amount_minor, p.amount.exact.as_deref()),
            (1500, Some("1500.5"))
        );
    }

    #[test]
    fn unknown_types_are_kept_unmapped() {
        let data = one(&event("payment.updated", "1.00", "eur"));
        assert_eq!(
            data,
            RecordData::Unmapped(Unmapped {
                external_id: Some("9007199254740993".into()),
                object_type: Some("payment".into()),
                reason: None,
            })
        );
        assert!(normalize(br#"{"type":"payment.completed"}"#).is_err());
    }
}
