//! Mapping provider enumerations to Sluice's vocabulary while keeping the raw value.

/// Look `raw` up in `table` (ASCII case-insensitive); `fallback` when absent. Returns the
/// mapped value and the raw text to store beside it (`status` / `status_raw`).
pub fn map<T: Copy>(raw: &str, table: &[(&str, T)], fallback: T) -> (T, String) {
    let value = table
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(raw))
        .map_or(fallback, |(_, v)| *v);
    (value, raw.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_case_insensitively_and_keeps_raw() {
        let table = [("paid", 1), ("refunded", 2)];
        assert_eq!(map("PAID", &table, 0), (1, "PAID".to_string()));
        assert_eq!(map("voided", &table, 0), (0, "voided".to_string()));
    }
}
