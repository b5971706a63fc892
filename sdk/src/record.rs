//! Building canonical records, with the warnings gathered while mapping them.
//!
//! A payload the driver can map only in part still yields its record: the fields it could
//! map, and a [`Warning`] (field, reason) for each it could not. A dead letter is for what a
//! retry or a driver fix can repair, not for one odd field.
//!
//! ```ignore
//! let mut warnings = Warnings::new();
//! let fee = warnings.keep("fee", money::money_from_decimal_str(fee, currency));
//! let mut records = vec![record(Change::Observed, RecordData::Payment(Payment { fee, .. }))];
//! warnings.attach(&mut records);
//! ```

use std::fmt::Display;

use crate::canonical::{CanonicalRecord, Change, Enrichment, RecordData, Unmapped, Warning};

/// A record without warnings, all from the payload.
pub fn record(change: Change, data: RecordData) -> CanonicalRecord {
    CanonicalRecord {
        change,
        data,
        warnings: Vec::new(),
        enriched_from: Vec::new(),
    }
}

/// Say that `fields` of `record` came from the extra call `source` (see
/// [`crate::enrich`]); `["*"]` when the whole record was built from a fetched object.
/// Fields named again for the same source are merged.
pub fn enriched(record: &mut CanonicalRecord, source: &str, fields: &[&str]) {
    let fields = fields.iter().map(|f| f.to_string());
    match record.enriched_from.iter_mut().find(|e| e.source == source) {
        Some(e) => {
            for f in fields {
                if !e.fields.contains(&f) {
                    e.fields.push(f);
                }
            }
        }
        None => record.enriched_from.push(Enrichment {
            source: source.to_string(),
            fields: fields.collect(),
        }),
    }
}

/// An event kept but not mapped: a kind the driver does not map.
pub fn unmapped(external_id: Option<String>, object_type: impl Into<String>) -> CanonicalRecord {
    record(
        Change::Observed,
        RecordData::Unmapped(Unmapped {
            external_id,
            object_type: Some(object_type.into()),
            reason: None,
        }),
    )
}

/// An event of a kind the driver maps, kept unmapped because this payload lacks what the
/// record needs (say why: "the dispute has no id").
pub fn unmapped_because(
    external_id: Option<String>,
    object_type: impl Into<String>,
    reason: impl Into<String>,
) -> CanonicalRecord {
    record(
        Change::Observed,
        RecordData::Unmapped(Unmapped {
            external_id,
            object_type: Some(object_type.into()),
            reason: Some(reason.into()),
        }),
    )
}

/// The warnings gathered while mapping one payload.
#[derive(Debug, Default)]
pub struct Warnings(Vec<Warning>);

impl Warnings {
    /// No warnings yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Note that `field` could not be mapped, and why.
    pub fn push(&mut self, field: impl Into<String>, reason: impl Display) {
        self.0.push(Warning {
            field: field.into(),
            reason: reason.to_string(),
        });
    }

    /// The value of a mapping that may fail: `Some` when it worked, else `None` and a
    /// warning for `field`.
    pub fn keep<T, E: Display>(&mut self, field: &str, result: Result<T, E>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(e) => {
                self.push(field, e);
                None
            }
        }
    }

    /// Whether nothing was noted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// What was noted.
    pub fn as_slice(&self) -> &[Warning] {
        &self.0
    }

    /// Add the warnings to every record of the payload they were gathered for.
    pub fn attach(self, records: &mut [CanonicalRecord]) {
        for record in records {
            record.warnings.extend(self.0.iter().cloned());
        }
    }
}
