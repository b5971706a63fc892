//! Bounded text: what the host stores, logs or answers of a text it did not write (a
//! driver's error message, a provider's answer) is cut to a known size first.

use std::borrow::Cow;

/// Longest text of a driver's (an error message, a failed normalization's reason, a
/// revocation's reason) that the host answers, logs or stores; the rest is cut off, with its
/// full length noted. The runtime cuts each as it leaves the sandbox.
pub const MAX_DRIVER_TEXT: usize = 4096;

/// `text`, cut at a character boundary to at most `max` bytes plus a marker saying how long
/// it was.
pub fn bounded(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &text[..end], text.len()).into()
}

/// `text` cut to [`MAX_DRIVER_TEXT`], owned.
pub fn bounded_error(text: &str) -> String {
    bounded(text, MAX_DRIVER_TEXT).into_owned()
}

/// `text` cut at a character boundary to at most `max` bytes, without a marker (log lines
/// whose length is their own business).
pub fn truncate(text: &mut String, max: usize) {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_texts_are_cut_at_a_character_boundary() {
        assert_eq!(bounded("short", 10), "short");
        // "é" is two bytes: a cut at byte 3 would split the second one.
        assert_eq!(bounded("aéé", 4), "aé… (5 bytes in all)");
        let long = "x".repeat(5000);
        let cut = bounded(&long, 1024);
        assert!(cut.starts_with(&"x".repeat(1024)));
        assert!(cut.ends_with("… (5000 bytes in all)"));
        assert_eq!(cut.len(), 1024 + "… (5000 bytes in all)".len());
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        let mut text = "aéé".to_string();
        truncate(&mut text, 4);
        assert_eq!(text, "aé");
        let mut short = "ab".to_string();
        truncate(&mut short, 4);
        assert_eq!(short, "ab");
    }
}
