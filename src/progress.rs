//! A progress line for long work: items done, rate, ETA — on stderr, at most twice a second.

use std::io::Write;
use std::time::Instant;

/// Reports `done/total unit, rate unit/s, ETA` on one self-overwriting stderr line.
pub struct Progress {
    unit: &'static str,
    total: usize,
    done: usize,
    start: Instant,
    last: Option<Instant>,
    enabled: bool,
}

impl Progress {
    /// A progress line for `total` items called `unit` ("pairs", "steps"); silent when
    /// `enabled` is false.
    pub fn new(unit: &'static str, total: usize, enabled: bool) -> Self {
        Progress {
            unit,
            total,
            done: 0,
            start: Instant::now(),
            last: None,
            enabled,
        }
    }

    /// Items per second so far.
    pub fn rate(&self) -> f64 {
        self.done as f64 / self.start.elapsed().as_secs_f64().max(1e-9)
    }

    /// Seconds since the start.
    pub fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// Count `n` more items done, with extra text (e.g. the current loss) after the rate.
    pub fn advance(&mut self, n: usize, extra: &str) {
        self.done += n;
        let finished = self.done >= self.total;
        let due = self.last.is_none_or(|t| t.elapsed().as_secs_f64() >= 0.5);
        if !self.enabled || !(due || finished) {
            return;
        }
        self.last = Some(Instant::now());
        let rate = self.rate();
        let eta = self.total.saturating_sub(self.done) as f64 / rate.max(1e-9);
        let mut stderr = std::io::stderr().lock();
        let _ = write!(
            stderr,
            "\r{}/{} {}, {rate:.2} {}/s, ETA {} {extra}  ",
            self.done,
            self.total,
            self.unit,
            self.unit,
            format_duration(eta)
        );
        if finished {
            let _ = writeln!(stderr);
        }
    }
}

/// `1h02m`, `3m05s`, `12s`.
pub fn format_duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}
