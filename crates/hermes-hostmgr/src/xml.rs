//! Text escaping shared by the plist and task-XML renderers. XML 1.0 cannot
//! hold most control characters at all, and parsers turn a raw carriage
//! return into a newline, so those are refused or written as references.

/// Escape `value` for XML character data; `Err` names what XML cannot hold.
pub fn escape_text(value: &str) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            // A literal CR would be read back as LF (XML end-of-line handling).
            '\r' => out.push_str("&#13;"),
            '\t' | '\n' => out.push(c),
            c if c.is_control() || c == '\u{FFFE}' || c == '\u{FFFF}' => {
                return Err(format!(
                    "{value:?} contains U+{:04X}, which XML 1.0 cannot represent",
                    c as u32
                ))
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_refuses() {
        assert_eq!(
            escape_text("a<b>&\"c\"\r\n\t").unwrap(),
            "a&lt;b&gt;&amp;&quot;c&quot;&#13;\n\t"
        );
        assert!(escape_text("bell\x07").is_err());
        assert!(escape_text("nul\0").is_err());
    }
}
