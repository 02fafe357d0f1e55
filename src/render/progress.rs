//! Progress bars and SQL timings on stderr.

use std::io::{self, Write};

use super::messages::one_line;

/// A progress bar on stderr, or nothing when progress is off (not a terminal,
/// `--quiet`, `--no-progress`).
pub fn progress(enabled: bool) -> Box<dyn crate::ops::Progress> {
    if enabled {
        Box::new(Bar(indicatif::ProgressBar::hidden()))
    } else {
        Box::new(crate::ops::NoProgress)
    }
}

struct Bar(indicatif::ProgressBar);

impl crate::ops::Progress for Bar {
    fn start(&self, total: u64) {
        self.0.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        self.0.set_length(total);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} tenants {elapsed} (eta {eta})")
        {
            self.0.set_style(style);
        }
    }
    fn advance(&self, done: u64) {
        self.0.inc(done);
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

/// One executed SQL statement on stderr, for `-vv`.
pub fn sql_profile(sql: &str, took: std::time::Duration) {
    let _ = writeln!(
        io::stderr().lock(),
        "sql: {}: {}",
        short_duration(took),
        one_line(sql)
    );
}

/// `412 µs` below a millisecond (most catalog statements), `3.217 ms` above.
fn short_duration(took: std::time::Duration) -> String {
    if took < std::time::Duration::from_millis(1) {
        format!("{} µs", took.as_micros())
    } else {
        format!("{:.3} ms", took.as_secs_f64() * 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_timings_show_microseconds_below_a_millisecond() {
        use std::time::Duration;
        assert_eq!(short_duration(Duration::from_nanos(41_900)), "41 µs");
        assert_eq!(short_duration(Duration::from_nanos(999_999)), "999 µs");
        assert_eq!(short_duration(Duration::from_micros(3_217)), "3.217 ms");
    }
}
