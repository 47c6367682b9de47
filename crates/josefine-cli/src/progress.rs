//! Progress on stderr for long-running commands: a redrawn bar when stderr is a
//! terminal, nothing otherwise (a pipe or a log stays clean: the command's summary
//! line says what was done), never on stdout (which carries the records).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// What a progress display counts.
pub struct Progress {
    what: &'static str,
    unit: &'static str,
    /// The total, when known (a file's size, `--count`).
    total: Option<u64>,
    /// The first sample (when, count): rates count from there, so work done before
    /// the display started does not inflate them.
    base: Option<(Instant, u64)>,
    last_drawn: Option<Instant>,
    terminal: bool,
    /// Extra text after the numbers (e.g. records while counting bytes).
    note: String,
}

const BAR_WIDTH: usize = 30;

impl Progress {
    pub fn new(what: &'static str, unit: &'static str, total: Option<u64>) -> Self {
        Self {
            what,
            unit,
            total,
            base: None,
            last_drawn: None,
            terminal: std::io::stderr().is_terminal(),
            note: String::new(),
        }
    }

    /// Text shown after the counts from now on.
    pub fn note(&mut self, note: String) {
        self.note = note;
    }

    /// Shows `done` if it is time to redraw (10 Hz, on a terminal only).
    pub fn tick(&mut self, done: u64) {
        self.base.get_or_insert_with(|| (Instant::now(), done));
        let every = Duration::from_millis(100);
        if !self.terminal || self.last_drawn.is_some_and(|t| t.elapsed() < every) {
            return;
        }
        self.last_drawn = Some(Instant::now());
        self.draw(done, false);
    }

    /// The final state, ending a terminal's bar line (elsewhere the caller's summary
    /// says it).
    pub fn finish(&mut self, done: u64) {
        self.base.get_or_insert_with(|| (Instant::now(), done));
        if self.terminal {
            self.draw(done, true);
        }
    }

    fn draw(&self, done: u64, last: bool) {
        let line = self.render(done);
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{line}{}", if last { "\n" } else { "" });
        let _ = err.flush();
    }

    fn render(&self, done: u64) -> String {
        let (since, at_start) = self.base.unwrap_or((Instant::now(), done));
        let seconds = since.elapsed().as_secs_f64();
        let rate = if seconds < 0.05 {
            "-".to_string()
        } else {
            human(done.saturating_sub(at_start) as f64 / seconds)
        };
        let counts = match self.total {
            Some(total) if total > 0 => {
                let fraction = (done as f64 / total as f64).clamp(0.0, 1.0);
                let filled = (fraction * BAR_WIDTH as f64) as usize;
                format!(
                    "[{}{}] {:>3.0}% {}/{} {}",
                    "=".repeat(filled),
                    " ".repeat(BAR_WIDTH - filled),
                    fraction * 100.0,
                    human(done as f64),
                    human(total as f64),
                    self.unit
                )
            }
            _ => format!("{} {}", human(done as f64), self.unit),
        };
        let note = if self.note.is_empty() {
            String::new()
        } else {
            format!(", {}", self.note)
        };
        format!("{} {counts}, {rate} {}/s{note}", self.what, self.unit)
    }
}

/// 1234567 as "1.23M": short, three significant digits.
pub fn human(n: f64) -> String {
    match n {
        n if n >= 1e9 => format!("{:.2}G", n / 1e9),
        n if n >= 1e6 => format!("{:.2}M", n / 1e6),
        n if n >= 1e4 => format!("{:.1}k", n / 1e3),
        n => format!("{n:.0}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_short() {
        assert_eq!(human(999.0), "999");
        assert_eq!(human(12_345.0), "12.3k");
        assert_eq!(human(1_234_567.0), "1.23M");
        assert_eq!(human(2.5e9), "2.50G");
    }

    #[test]
    fn a_known_total_draws_a_bar() {
        let p = Progress::new("produced", "records", Some(200));
        let line = p.render(50);
        assert!(line.starts_with("produced ["), "{line}");
        assert!(line.contains(" 25% 50/200 records"), "{line}");
        let p = Progress::new("consumed", "records", None);
        assert!(p.render(7).starts_with("consumed 7 records"));
    }
}
