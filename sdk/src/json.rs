//! JSON for plugins: `serde_json`, with a nesting bound checked first.
//!
//! A plugin runs on a small stack (32 KiB, set when plugins are built), and
//! serde_json parses nested arrays and objects recursively: an ERP answer
//! or pricing parameters nested deeply enough overflow that stack and trap
//! the call (fuzzing found `[[[[…` bodies trapping the Tryton mapper). Deeper
//! input than [`MAX_DEPTH`] is refused with an ordinary error instead, before
//! any parsing; nothing Tollgate or an ERP sends nests half as deep.

/// Most nesting of arrays and objects a plugin parses.
pub const MAX_DEPTH: usize = 32;

/// How deeply `text` nests arrays and objects (outside strings).
pub fn depth(text: &str) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for b in text.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// `serde_json::from_str`, refusing input nested deeper than [`MAX_DEPTH`].
pub fn from_str<T: serde::de::DeserializeOwned>(text: &str) -> serde_json::Result<T> {
    let d = depth(text);
    if d > MAX_DEPTH {
        return Err(serde::de::Error::custom(format!("JSON nested {d} levels deep; at most {MAX_DEPTH} are read")));
    }
    serde_json::from_str(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_is_counted_outside_strings_and_bounded() {
        assert_eq!(depth(r#"{"a": [1, {"b": "[[[[{{"}], "c": "\"["}"#), 3);
        let deep = format!("{}1{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        let err = from_str::<serde_json::Value>(&deep).unwrap_err();
        assert!(err.to_string().contains("33 levels deep"), "{err}");
        let ok = format!("{}1{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(from_str::<serde_json::Value>(&ok).is_ok());
    }
}
