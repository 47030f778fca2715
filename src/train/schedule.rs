//! Learning-rate schedules: linear warmup, then cosine decay to a floor, or warmup-stable-decay (WSD:
//! flat at the peak, then a linear decay over the last part of training), which suits runs whose length
//! is not known in advance.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    Cosine,
    Wsd,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    pub kind: ScheduleKind,
    pub peak: f64,
    /// The floor as a share of the peak.
    pub min_ratio: f64,
    pub warmup_steps: u64,
    pub total_steps: u64,
    /// WSD: share of training spent decaying at the end.
    pub decay_fraction: f64,
}

impl LrSchedule {
    /// Learning rate for optimizer step `step` (0-based).
    pub fn lr(&self, step: u64) -> f64 {
        let floor = self.peak * self.min_ratio;
        if step < self.warmup_steps {
            return self.peak * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let total = self.total_steps.max(self.warmup_steps + 1);
        match self.kind {
            ScheduleKind::Cosine => {
                let progress = (step - self.warmup_steps) as f64 / (total - self.warmup_steps) as f64;
                let progress = progress.clamp(0.0, 1.0);
                floor + (self.peak - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
            ScheduleKind::Wsd => {
                let decay_steps = ((total as f64) * self.decay_fraction).round().max(1.0) as u64;
                let decay_start = total.saturating_sub(decay_steps).max(self.warmup_steps);
                if step < decay_start {
                    self.peak
                } else {
                    let progress = ((step - decay_start) as f64 / decay_steps as f64).clamp(0.0, 1.0);
                    self.peak + (floor - self.peak) * progress
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(kind: ScheduleKind) -> LrSchedule {
        LrSchedule {
            kind,
            peak: 1.0,
            min_ratio: 0.1,
            warmup_steps: 10,
            total_steps: 110,
            decay_fraction: 0.2,
        }
    }

    #[test]
    fn warmup_rises_linearly_then_cosine_falls_to_the_floor() {
        let s = sched(ScheduleKind::Cosine);
        assert!((s.lr(0) - 0.1).abs() < 1e-12);
        assert!((s.lr(9) - 1.0).abs() < 1e-12);
        assert!((s.lr(10) - 1.0).abs() < 1e-12);
        assert!((s.lr(60) - 0.55).abs() < 1e-9);
        assert!((s.lr(110) - 0.1).abs() < 1e-12);
        assert!((s.lr(500) - 0.1).abs() < 1e-12);
    }

    #[test]
    fn wsd_holds_the_peak_then_decays_over_the_last_fifth() {
        let s = sched(ScheduleKind::Wsd);
        assert_eq!(s.lr(50), 1.0);
        assert_eq!(s.lr(87), 1.0);
        assert!((s.lr(88) - 1.0).abs() < 1e-12);
        assert!(s.lr(99) < 1.0 && s.lr(99) > 0.1);
        assert!((s.lr(110) - 0.1).abs() < 1e-12);
    }
}
