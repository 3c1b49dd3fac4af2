//! The learning-rate schedule.

/// Peak learning rate, linear warmup over `warmup` steps, cosine decay to `floor · peak` at
/// `total` steps:
///
/// ```text
/// lr(s) = peak · (s + 1) / warmup                                   s < warmup
/// lr(s) = peak · (floor + (1 − floor) · (1 + cos(π·(s − warmup)/(total − warmup))) / 2)   otherwise
/// ```
///
/// for the 0-based optimizer step `s` (so the first step already has a non-zero rate).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    pub peak: f64,
    pub warmup: usize,
    pub total: usize,
    pub floor: f64,
}

impl Schedule {
    /// The learning rate of optimizer step `step` (0-based).
    pub fn lr(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.peak * (step + 1) as f64 / self.warmup as f64;
        }
        let span = self.total.saturating_sub(self.warmup).max(1) as f64;
        let progress = ((step - self.warmup) as f64 / span).min(1.0);
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        self.peak * (self.floor + (1.0 - self.floor) * cosine)
    }
}
