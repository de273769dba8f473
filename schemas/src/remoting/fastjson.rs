//! Reading JSON as Java's fastjson writes it.
//!
//! fastjson writes a map with integer keys with the keys unquoted
//! (`{"currIdMap":{0:1}}`), which is not JSON. A Java broker's registration
//! carries such maps in its static-topic mappings; this turns them into
//! JSON before parsing.

/// `text` with every bare integer object key quoted, or `None` if it has
/// none. Strings are skipped, so their contents are never touched.
pub(crate) fn quote_integer_keys(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() + 16);
    let mut changed = false;
    let mut index = 0;
    let mut in_string = false;
    // True right after `{` or `,` outside strings: where a key may start.
    let mut key_may_start = false;
    while index < text.len() {
        let byte = text[index];
        if in_string {
            out.push(byte);
            match byte {
                b'\\' => {
                    if let Some(&escaped) = text.get(index + 1) {
                        out.push(escaped);
                        index += 1;
                    }
                }
                b'"' => in_string = false,
                _ => {}
            }
            index += 1;
            continue;
        }
        if key_may_start && (byte == b'-' || byte.is_ascii_digit()) {
            let digits_end = index
                + 1
                + text[index + 1..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .count();
            let colon_at = digits_end
                + text[digits_end..]
                    .iter()
                    .take_while(|b| b.is_ascii_whitespace())
                    .count();
            if text.get(colon_at) == Some(&b':') {
                out.push(b'"');
                out.extend_from_slice(&text[index..digits_end]);
                out.push(b'"');
                changed = true;
                index = digits_end;
                key_may_start = false;
                continue;
            }
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b',' => key_may_start = true,
            _ if byte.is_ascii_whitespace() => {}
            _ => key_may_start = false,
        }
        if byte == b'"' {
            key_may_start = false;
        }
        out.push(byte);
        index += 1;
    }
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quoted(text: &str) -> Option<String> {
        quote_integer_keys(text.as_bytes()).map(|bytes| String::from_utf8(bytes).unwrap())
    }

    #[test]
    fn bare_integer_keys_are_quoted_and_values_and_strings_are_not() {
        assert_eq!(
            quoted(r#"{"currIdMap":{0:1, -2 :3},"list":[4,5],"s":"{6:7}"}"#).as_deref(),
            Some(r#"{"currIdMap":{"0":1, "-2" :3},"list":[4,5],"s":"{6:7}"}"#)
        );
        assert_eq!(quoted(r#"{"a":[1,2],"b":"x\"{3:4}"}"#), None);
    }
}
