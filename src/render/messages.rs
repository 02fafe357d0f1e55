//! Messages to the operator: errors, warnings, notes and debug lines, each on one line.

use std::io::Write;

use serde_json::{Map, Value};

use super::Sink;

/// Messages to the operator on the stderr sink.
#[derive(Debug, Clone)]
pub struct Messages {
    pub color: bool,
    pub quiet: bool,
    pub verbose: u8,
    pub stderr: Sink,
}

impl Messages {
    /// `error: <what> (<hint>)`, and with JSON output also the error object.
    pub fn error(&self, code: &str, exit_code: u8, message: &str, hint: Option<&str>, json: bool) {
        let label = if self.color {
            "\x1b[1;31merror:\x1b[0m"
        } else {
            "error:"
        };
        let line = one_line(message);
        match hint {
            Some(hint) => self.line(&format!("{label} {line} ({})", one_line(hint))),
            None => self.line(&format!("{label} {line}")),
        }
        if json {
            let object = serde_json::json!({"error": {"code": code, "message": line, "exit_code": exit_code, "hint": hint}});
            self.line(&object.to_string());
        }
    }

    pub fn warning(&self, message: &str) {
        if self.quiet {
            return;
        }
        let label = if self.color {
            "\x1b[1;33mwarning:\x1b[0m"
        } else {
            "warning:"
        };
        self.line(&format!("{label} {}", one_line(message)));
    }

    /// Status talk for people (`created customer acme`); silent with `--quiet`.
    pub fn note(&self, message: &str) {
        if !self.quiet {
            self.line(&one_line(message));
        }
    }

    /// Detail for support, shown with `-v`.
    pub fn debug(&self, message: &str) {
        if self.verbose > 0 {
            self.line(&format!("debug: {}", one_line(message)));
        }
    }

    /// One whole line in one write, so lines from threads never interleave. A
    /// message that cannot be written has nowhere else to go.
    fn line(&self, text: &str) {
        let _ = self.stderr.clone().write_all(format!("{text}\n").as_bytes());
    }
}

pub(super) fn one_line(text: &str) -> String {
    text.split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Builds an object from ordered pairs, for small results that have no struct.
pub fn fields(pairs: impl IntoIterator<Item = (&'static str, Value)>) -> Value {
    Value::Object(
        pairs
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<Map<_, _>>(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_lines_fold_newlines() {
        assert_eq!(one_line("a\n  b\r\nc"), "a b c");
    }
}
