//! Text from outside files made fit for a one-line error message.

/// `text` with its control characters as Rust escapes (`\n`, `\u{1b}`): a JSON key, a column
/// name or a parser's message quoting the input stays on one line.
pub fn escape_controls(text: &str) -> String {
    text.chars()
        .map(|c| match c.is_control() {
            true => c.escape_default().to_string(),
            false => c.to_string(),
        })
        .collect()
}
