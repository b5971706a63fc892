//! Field-level differences between two JSON documents, named by JSON pointer (RFC 6901),
//! and the `ignore` pointers a fixture masks before comparing.

use serde_json::Value;

/// What a masked value is replaced with, in the output and in the snapshot.
pub const IGNORED: &str = "<ignored>";

/// One difference: where, and the value on each side (`None`: absent there).
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    pub pointer: String,
    pub expected: Option<Value>,
    pub actual: Option<Value>,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |v: &Option<Value>| v.as_ref().map_or("(absent)".to_string(), brief);
        let at = if self.pointer.is_empty() {
            "(the whole document)"
        } else {
            &self.pointer
        };
        write!(
            f,
            "{at}: expected {}, got {}",
            show(&self.expected),
            show(&self.actual)
        )
    }
}

/// `value` as compact JSON, cut to a readable length.
fn brief(value: &Value) -> String {
    const MAX: usize = 160;
    let text = value.to_string();
    if text.len() <= MAX {
        return text;
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len())
}

/// One pointer segment, escaped (`~` → `~0`, `/` → `~1`).
fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

fn unescape(segment: &str) -> String {
    segment.replace("~1", "/").replace("~0", "~")
}

/// Every leaf where `expected` and `actual` differ, in document order. Objects are
/// compared key by key, arrays index by index (an extra or missing element is one
/// difference), anything else by value.
pub fn differences(expected: &Value, actual: &Value) -> Vec<Difference> {
    let mut out = Vec::new();
    walk(expected, actual, String::new(), &mut out);
    out
}

fn walk(expected: &Value, actual: &Value, at: String, out: &mut Vec<Difference>) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (key, ev) in e {
                let here = format!("{at}/{}", escape(key));
                match a.get(key) {
                    Some(av) => walk(ev, av, here, out),
                    None => out.push(Difference {
                        pointer: here,
                        expected: Some(ev.clone()),
                        actual: None,
                    }),
                }
            }
            for (key, av) in a.iter().filter(|(k, _)| !e.contains_key(*k)) {
                out.push(Difference {
                    pointer: format!("{at}/{}", escape(key)),
                    expected: None,
                    actual: Some(av.clone()),
                });
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            for i in 0..e.len().max(a.len()) {
                let here = format!("{at}/{i}");
                match (e.get(i), a.get(i)) {
                    (Some(ev), Some(av)) => walk(ev, av, here, out),
                    (ev, av) => out.push(Difference {
                        pointer: here,
                        expected: ev.cloned(),
                        actual: av.cloned(),
                    }),
                }
            }
        }
        (e, a) if e == a => {}
        (e, a) => out.push(Difference {
            pointer: at,
            expected: Some(e.clone()),
            actual: Some(a.clone()),
        }),
    }
}

/// Replace the value at `pointer` with [`IGNORED`] wherever it exists; a `*` segment stands
/// for every element of an array or member of an object. Returns whether anything matched.
pub fn mask(value: &mut Value, pointer: &str) -> Result<bool, String> {
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(format!(
            "ignore pointer {pointer:?} must start with `/` (a JSON pointer)"
        ));
    };
    let segments: Vec<String> = rest.split('/').map(unescape).collect();
    Ok(mask_at(value, &segments))
}

fn mask_at(value: &mut Value, segments: &[String]) -> bool {
    let Some((first, rest)) = segments.split_first() else {
        *value = Value::String(IGNORED.into());
        return true;
    };
    let children: Vec<&mut Value> = match (value, first.as_str()) {
        (Value::Array(items), "*") => items.iter_mut().collect(),
        (Value::Object(map), "*") => map.values_mut().collect(),
        (Value::Array(items), index) => index
            .parse::<usize>()
            .ok()
            .and_then(|i| items.get_mut(i))
            .into_iter()
            .collect(),
        (Value::Object(map), key) => map.get_mut(key).into_iter().collect(),
        _ => Vec::new(),
    };
    let mut any = false;
    for child in children {
        any |= mask_at(child, rest);
    }
    any
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn differences_are_named_by_pointer() {
        let expected = json!({"events": [{"id": 1, "a/b": "x", "gone": true}], "ok": true});
        let actual = json!({"events": [{"id": 2, "a/b": "y", "new": null}, 5], "ok": true});
        let found = differences(&expected, &actual);
        // (Sorted: key order follows serde_json's map, which a feature could change.)
        let mut text: Vec<String> = found.iter().map(ToString::to_string).collect();
        text.sort();
        assert_eq!(
            text,
            vec![
                "/events/0/a~1b: expected \"x\", got \"y\"",
                "/events/0/gone: expected true, got (absent)",
                "/events/0/id: expected 1, got 2",
                "/events/0/new: expected (absent), got null",
                "/events/1: expected (absent), got 5",
            ]
        );
        assert!(differences(&expected, &expected).is_empty());
        // A type change is one difference, not one per field.
        assert_eq!(
            differences(&json!({"a": {"b": 1}}), &json!({"a": [1]})).len(),
            1
        );
        assert_eq!(
            differences(&json!(1), &json!(2))[0].to_string(),
            "(the whole document): expected 1, got 2"
        );
    }

    #[test]
    fn masks_apply_everywhere_a_wildcard_reaches() {
        let mut value =
            json!({"events": [{"id": "a", "k": 1}, {"id": "b"}], "x": {"p": 1, "q": 2}});
        assert_eq!(mask(&mut value, "/events/*/id"), Ok(true));
        assert_eq!(mask(&mut value, "/x/*"), Ok(true));
        assert_eq!(mask(&mut value, "/events/5/id"), Ok(false));
        assert_eq!(mask(&mut value, "/nothing"), Ok(false));
        assert!(mask(&mut value, "events").is_err());
        assert_eq!(
            value,
            json!({"events": [{"id": IGNORED, "k": 1}, {"id": IGNORED}], "x": {"p": IGNORED, "q": IGNORED}})
        );
        let mut value = json!({"a/b": 1});
        assert_eq!(mask(&mut value, "/a~1b"), Ok(true));
    }

    #[test]
    fn long_values_are_cut() {
        let long = Value::String("x".repeat(500));
        let shown = brief(&long);
        assert!(shown.ends_with("(502 bytes)"), "{shown}");
        assert!(shown.len() < 200);
    }
}
