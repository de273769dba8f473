//! How results reach the user: tables or JSON on stdout, and the
//! [`Failure`] that decides the exit code.

use std::fmt::Display;
use std::io::{self, Write};

use comfy_table::{presets, ContentArrangement, Table};
use serde::Serialize;

use crate::cli::Format;

/// Why kvctl stops: a message for stderr and the exit code.
#[derive(Debug)]
pub struct Failure {
    /// Printed as `error: <message>`; nothing when empty.
    pub message: String,
    /// 1 for errors, 2 for usage; 0 when the reader of our output went
    /// away (a closed pipe is how `kvctl ls | head` ends).
    pub code: u8,
}

impl Failure {
    /// An error: exit code 1.
    pub fn error(message: impl Display) -> Failure {
        Failure {
            message: message.to_string(),
            code: 1,
        }
    }

    /// A misuse of the command line: exit code 2.
    pub fn usage(message: impl Display) -> Failure {
        Failure {
            message: message.to_string(),
            code: 2,
        }
    }
}

impl From<kv_client::Error> for Failure {
    fn from(error: kv_client::Error) -> Failure {
        match error {
            // Refused before anything was sent: a bad argument.
            kv_client::Error::Invalid { .. } => Failure::usage(error),
            error => Failure::error(error),
        }
    }
}

impl From<io::Error> for Failure {
    fn from(error: io::Error) -> Failure {
        if error.kind() == io::ErrorKind::BrokenPipe {
            Failure {
                message: String::new(),
                code: 0,
            }
        } else {
            Failure::error(format!("writing the output: {error}"))
        }
    }
}

/// Prints results in the chosen format.
pub struct Printer {
    pub format: Format,
}

impl Printer {
    pub fn new(format: Format) -> Printer {
        Printer { format }
    }

    pub fn is_json(&self) -> bool {
        self.format == Format::Json
    }

    /// One JSON document, pretty-printed.
    pub fn json<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), Failure> {
        let text = serde_json::to_string_pretty(value)
            .map_err(|error| Failure::error(format!("cannot show the result: {error}")))?;
        self.line(text)
    }

    /// One JSON document on one line (for event streams).
    pub fn json_line<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), Failure> {
        let text = serde_json::to_string(value)
            .map_err(|error| Failure::error(format!("cannot show the result: {error}")))?;
        self.line(text)
    }

    /// A line of text.
    pub fn line(&self, text: impl Display) -> Result<(), Failure> {
        let mut stdout = io::stdout().lock();
        writeln!(stdout, "{text}")?;
        stdout.flush()?;
        Ok(())
    }

    /// A table with a header row, columns aligned, no borders.
    pub fn table<R, C>(&self, header: &[&str], rows: R) -> Result<(), Failure>
    where
        R: IntoIterator<Item = Vec<C>>,
        C: Display,
    {
        let mut table = Table::new();
        table
            .load_preset(presets::NOTHING)
            .set_content_arrangement(ContentArrangement::Disabled)
            .set_header(header.iter().copied());
        for row in rows {
            table.add_row(row.iter().map(ToString::to_string));
        }
        self.line(trim_lines(&table.to_string()))
    }

    /// A two-column table of a record's fields.
    pub fn fields<C: Display>(&self, rows: Vec<(&str, C)>) -> Result<(), Failure> {
        let mut table = Table::new();
        table
            .load_preset(presets::NOTHING)
            .set_content_arrangement(ContentArrangement::Disabled);
        for (name, value) in rows {
            table.add_row(vec![format!("{name}:"), value.to_string()]);
        }
        self.line(trim_lines(&table.to_string()))
    }
}

/// comfy-table pads every cell; trailing spaces only get in the way.
fn trim_lines(text: &str) -> String {
    text.lines()
        .map(|line| line.trim_end().strip_prefix(' ').unwrap_or(line.trim_end()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A JSON value (its text) on one line without the whitespace between its
/// tokens, cut to `max_chars` characters. The text is kept, not read into
/// numbers, so a number past `f64` shows as written.
pub fn compact(json: &str, max_chars: usize) -> String {
    let mut text = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            in_string = escaped || c != '"';
            escaped = !escaped && c == '\\';
        } else if c.is_ascii_whitespace() {
            continue;
        } else {
            in_string = c == '"';
        }
        text.push(c);
    }
    if text.chars().count() <= max_chars {
        text
    } else {
        let cut: String = text.chars().take(max_chars.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_drops_the_whitespace_between_tokens_only() {
        let json = "{\n  \"a b\": [1, 2],\n  \"q\": \"x \\\" y\\\\\" ,\n \"n\": 1e999999 }";
        assert_eq!(
            compact(json, 100),
            r#"{"a b":[1,2],"q":"x \" y\\","n":1e999999}"#
        );
        assert_eq!(compact("\"abcdef\"", 4), "\"ab…");
    }
}
