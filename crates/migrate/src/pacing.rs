//! How fast a backfill walks: a fixed pause between batches, or (the default) an AIMD controller
//! that watches for harm to the application's writers after every batch and adjusts the batch
//! size and the pause between batches.
//!
//! The controller is pure: it is fed one [`BatchSignal`] per committed batch (gathered by the
//! backend: PostgreSQL samples `pg_stat_activity` while the batch runs, SQLite only has the
//! batch latency) and returns the next batch size and pause. Additive increase while healthy,
//! multiplicative decrease on harm — the shape TCP congestion control uses, so the backfill
//! settles just under the point where the writers start to notice it.

use std::time::Duration;

/// How the backfill paces its batches.
#[derive(Clone, Debug, PartialEq)]
pub enum Pacing {
    /// Watch the writers and adapt batch size and pause ([`AimdController`]).
    Adaptive {
        /// Upper bound on rows per second, whatever the signals say (`None`: no bound).
        max_rows_per_second: Option<u32>,
    },
    /// The same batch size and the same pause after every batch.
    Fixed(Duration),
}

impl Default for Pacing {
    fn default() -> Self {
        Pacing::Adaptive {
            max_rows_per_second: None,
        }
    }
}

/// What the backend saw during one batch.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BatchSignal {
    /// Rows the batch covered.
    pub rows: u64,
    /// Milliseconds from sending the batch to its commit.
    pub millis: f64,
    /// Most sessions seen at once waiting on a lock the backfill held.
    pub blocked_writers: u32,
    /// The backfill itself was seen waiting on a lock (a writer works in its key range), or it
    /// had to retry after a lock timeout.
    pub backfill_waited: bool,
}

/// Why the controller backed off.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase", tag = "reason")]
pub enum Harm {
    /// Other sessions queued behind the backfill's row locks.
    WritersBlocked { sessions: u32 },
    /// The backfill queued behind a writer: the two work on the same rows.
    BackfillWaited,
    /// The batch took far longer per row than the healthy baseline: the database is saturated.
    SlowBatch { ratio: f64 },
}

/// The controller's answer for the next batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Decision {
    /// `None` when the batch looked healthy.
    pub harm: Option<Harm>,
    /// Rows in the next batch.
    pub batch_size: u32,
    /// Pause before the next batch.
    pub pause: Duration,
}

/// Tuning of the controller. The defaults are what `cutover migrate backfill` uses.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AimdTuning {
    /// The smallest batch a backoff goes down to.
    pub min_batch: u32,
    /// Rows added to the batch after each healthy batch.
    pub batch_step: u32,
    /// Pause as a share of the batch's own time while healthy: the writers always get this
    /// much room between batches.
    pub min_yield: f64,
    /// The largest pause share a run of backoffs goes up to.
    pub max_yield: f64,
    /// Pause share taken off after each healthy batch.
    pub yield_step: f64,
    /// A batch slower per row than this multiple of the healthy baseline counts as harm.
    pub slow_ratio: f64,
    /// Batches shorter than this never count as slow (timer noise on tiny batches).
    pub slow_floor_millis: f64,
}

impl Default for AimdTuning {
    fn default() -> Self {
        Self {
            min_batch: 10,
            batch_step: 100,
            min_yield: 0.5,
            max_yield: 8.0,
            yield_step: 0.25,
            slow_ratio: 3.0,
            slow_floor_millis: 20.0,
        }
    }
}

/// Additive-increase / multiplicative-decrease controller of batch size and pause.
#[derive(Clone, Debug)]
pub struct AimdController {
    tuning: AimdTuning,
    max_batch: u32,
    batch: u32,
    yield_share: f64,
    /// Healthy milliseconds per row, a moving average.
    baseline: Option<f64>,
    max_rows_per_second: Option<u32>,
}

impl AimdController {
    /// Starts at `max_batch` rows (the configured batch size is also the ceiling) with the
    /// minimum pause share.
    pub fn new(max_batch: u32, max_rows_per_second: Option<u32>, tuning: AimdTuning) -> Self {
        let max_batch = max_batch.max(1);
        Self {
            tuning,
            max_batch,
            batch: max_batch,
            yield_share: tuning.min_yield,
            baseline: None,
            max_rows_per_second,
        }
    }

    /// Rows in the next batch.
    pub fn batch_size(&self) -> u32 {
        self.batch
    }

    fn harm(&self, s: &BatchSignal) -> Option<Harm> {
        if s.blocked_writers > 0 {
            return Some(Harm::WritersBlocked {
                sessions: s.blocked_writers,
            });
        }
        if s.backfill_waited {
            return Some(Harm::BackfillWaited);
        }
        let per_row = s.millis / s.rows.max(1) as f64;
        match self.baseline {
            Some(base) if s.millis >= self.tuning.slow_floor_millis && base > 0.0 => {
                let ratio = per_row / base;
                (ratio > self.tuning.slow_ratio).then_some(Harm::SlowBatch { ratio })
            }
            _ => None,
        }
    }

    /// Takes one batch's signal and returns the next batch's size and pause.
    pub fn observe(&mut self, s: &BatchSignal) -> Decision {
        let harm = self.harm(s);
        let t = self.tuning;
        if harm.is_some() {
            self.batch = (self.batch / 2).max(t.min_batch.min(self.max_batch));
            self.yield_share = (self.yield_share * 2.0).min(t.max_yield);
        } else {
            self.batch = self.batch.saturating_add(t.batch_step).min(self.max_batch);
            self.yield_share = (self.yield_share - t.yield_step).max(t.min_yield);
            // Only healthy batches of a meaningful size teach the baseline, so a slow spell
            // does not become the new normal.
            if s.rows > 0 && s.millis > 0.0 {
                let per_row = s.millis / s.rows as f64;
                self.baseline = Some(match self.baseline {
                    Some(b) => 0.8 * b + 0.2 * per_row,
                    None => per_row,
                });
            }
        }
        let mut pause = millis(s.millis.max(0.0) * self.yield_share);
        if let Some(rate) = self.max_rows_per_second.filter(|r| *r > 0) {
            // The next batch plus its pause must not run faster than the bound.
            let floor = f64::from(self.batch) / f64::from(rate) - s.millis.max(0.0) / 1000.0;
            pause = pause.max(millis(floor.max(0.0) * 1000.0));
        }
        Decision {
            harm,
            batch_size: self.batch,
            pause,
        }
    }
}

/// Milliseconds as a Duration, rounded to the microsecond (a pause needs no more).
fn millis(ms: f64) -> Duration {
    Duration::from_micros((ms * 1000.0).round() as u64)
}

/// What the pacing did in a run (part of the backfill's report).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PacingReport {
    /// `adaptive` or `fixed`.
    pub mode: String,
    /// Whether lock waits were watched from a second session (PostgreSQL, adaptive); without
    /// it the controller goes by batch latency alone.
    pub watched_locks: bool,
    /// Batches after which the controller backed off.
    pub backoffs: u64,
    /// Batches during which other sessions waited on the backfill's locks.
    pub batches_blocking_writers: u64,
    /// Batches during which the backfill waited on a writer's lock.
    pub batches_waiting: u64,
    /// The smallest batch size the controller chose.
    pub smallest_batch: u32,
    /// The batch size chosen after the last batch.
    pub last_batch: u32,
    /// Total pause between batches, in milliseconds.
    pub paused_millis: f64,
    /// The first backoffs, in order (at most 20, for the report).
    pub first_harms: Vec<Harm>,
}

impl PacingReport {
    /// Records one decision.
    pub fn record(&mut self, signal: &BatchSignal, decision: &Decision) {
        if signal.blocked_writers > 0 {
            self.batches_blocking_writers += 1;
        }
        if signal.backfill_waited {
            self.batches_waiting += 1;
        }
        if let Some(h) = decision.harm {
            self.backoffs += 1;
            if self.first_harms.len() < 20 {
                self.first_harms.push(h);
            }
        }
        self.smallest_batch = if self.smallest_batch == 0 {
            decision.batch_size
        } else {
            self.smallest_batch.min(decision.batch_size)
        };
        self.last_batch = decision.batch_size;
        self.paused_millis += decision.pause.as_secs_f64() * 1000.0;
    }
}

/// Paces one backfill run: the controller for adaptive pacing, or the fixed pause.
pub(crate) struct Pacer {
    controller: Option<AimdController>,
    fixed: Duration,
    batch: u32,
}

impl Pacer {
    pub(crate) fn new(pacing: &Pacing, batch_size: u32, report: &mut PacingReport) -> Self {
        let batch = batch_size.max(1);
        match pacing {
            Pacing::Adaptive {
                max_rows_per_second,
            } => {
                report.mode = "adaptive".into();
                Self {
                    controller: Some(AimdController::new(
                        batch,
                        *max_rows_per_second,
                        AimdTuning::default(),
                    )),
                    fixed: Duration::ZERO,
                    batch,
                }
            }
            Pacing::Fixed(pause) => {
                report.mode = "fixed".into();
                Self {
                    controller: None,
                    fixed: *pause,
                    batch,
                }
            }
        }
    }

    /// Whether the backend should sample lock waits during each batch.
    pub(crate) fn adaptive(&self) -> bool {
        self.controller.is_some()
    }

    pub(crate) fn batch_size(&self) -> u32 {
        self.controller
            .as_ref()
            .map_or(self.batch, AimdController::batch_size)
    }

    /// Feeds one batch's signal; returns the pause before the next batch.
    pub(crate) fn after_batch(
        &mut self,
        signal: &BatchSignal,
        report: &mut PacingReport,
    ) -> Duration {
        let decision = match &mut self.controller {
            Some(c) => c.observe(signal),
            None => Decision {
                harm: None,
                batch_size: self.batch,
                pause: self.fixed,
            },
        };
        report.record(signal, &decision);
        decision.pause
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy(rows: u64) -> BatchSignal {
        BatchSignal {
            rows,
            millis: rows as f64 * 0.05,
            ..BatchSignal::default()
        }
    }

    fn controller() -> AimdController {
        AimdController::new(1000, None, AimdTuning::default())
    }

    #[test]
    fn steady_healthy_batches_keep_the_full_batch_and_the_minimum_pause() {
        let mut c = controller();
        let mut last = None;
        for _ in 0..50 {
            let s = healthy(u64::from(c.batch_size()));
            last = Some(c.observe(&s));
        }
        let Some(d) = last else { panic!("no decision") };
        assert_eq!(d.harm, None);
        assert_eq!(d.batch_size, 1000);
        // 1000 rows × 0.05 ms = 50 ms of work, half of it again as pause.
        assert_eq!(d.pause, Duration::from_millis(25));
    }

    #[test]
    fn blocked_writers_halve_the_batch_and_double_the_pause_share() {
        let mut c = controller();
        c.observe(&healthy(1000));
        let d = c.observe(&BatchSignal {
            blocked_writers: 2,
            ..healthy(1000)
        });
        assert_eq!(d.harm, Some(Harm::WritersBlocked { sessions: 2 }));
        assert_eq!(d.batch_size, 500);
        assert_eq!(d.pause, Duration::from_millis(50));
        let d = c.observe(&BatchSignal {
            backfill_waited: true,
            ..healthy(500)
        });
        assert_eq!(d.harm, Some(Harm::BackfillWaited));
        assert_eq!(d.batch_size, 250);
    }

    #[test]
    fn backoffs_stop_at_the_floor_and_the_pause_ceiling() {
        let mut c = controller();
        for _ in 0..30 {
            c.observe(&BatchSignal {
                blocked_writers: 1,
                ..healthy(10)
            });
        }
        let d = c.observe(&BatchSignal {
            rows: 10,
            millis: 100.0,
            blocked_writers: 1,
            backfill_waited: false,
        });
        assert_eq!(d.batch_size, 10);
        assert_eq!(d.pause, Duration::from_millis(800));
    }

    #[test]
    fn recovers_additively_once_the_harm_is_gone() {
        let mut c = controller();
        for _ in 0..5 {
            c.observe(&BatchSignal {
                blocked_writers: 1,
                ..healthy(100)
            });
        }
        assert_eq!(c.batch_size(), 31);
        let mut sizes = Vec::new();
        for _ in 0..12 {
            let s = healthy(u64::from(c.batch_size()));
            sizes.push(c.observe(&s).batch_size);
        }
        assert_eq!(&sizes[..3], &[131, 231, 331]);
        assert_eq!(sizes.last(), Some(&1000));
    }

    #[test]
    fn a_batch_much_slower_per_row_than_the_baseline_is_harm() {
        let mut c = controller();
        for _ in 0..5 {
            c.observe(&healthy(1000));
        }
        let d = c.observe(&BatchSignal {
            rows: 1000,
            millis: 400.0,
            ..BatchSignal::default()
        });
        assert!(
            matches!(d.harm, Some(Harm::SlowBatch { ratio }) if ratio > 7.0),
            "{d:?}"
        );
        assert_eq!(d.batch_size, 500);
        // Twice as slow is within the noise the controller accepts.
        let d = c.observe(&BatchSignal {
            rows: 500,
            millis: 50.0,
            ..BatchSignal::default()
        });
        assert_eq!(d.harm, None);
    }

    #[test]
    fn the_slow_baseline_ignores_tiny_batches() {
        let mut c = controller();
        c.observe(&healthy(1000));
        let d = c.observe(&BatchSignal {
            rows: 1,
            millis: 5.0,
            ..BatchSignal::default()
        });
        assert_eq!(d.harm, None);
    }

    #[test]
    fn a_rate_bound_stretches_the_pause() {
        let mut c = AimdController::new(1000, Some(10_000), AimdTuning::default());
        let d = c.observe(&healthy(1000));
        // 1000 rows at 10k rows/s need 100 ms; the batch took 50 ms.
        assert_eq!(d.pause, Duration::from_millis(50));
    }

    #[test]
    fn fixed_pacing_never_changes_the_batch() {
        let mut report = PacingReport::default();
        let mut p = Pacer::new(&Pacing::Fixed(Duration::from_millis(7)), 200, &mut report);
        let pause = p.after_batch(
            &BatchSignal {
                blocked_writers: 3,
                ..healthy(200)
            },
            &mut report,
        );
        assert_eq!(pause, Duration::from_millis(7));
        assert_eq!(p.batch_size(), 200);
        assert_eq!(report.backoffs, 0);
        assert_eq!(report.batches_blocking_writers, 1);
        assert_eq!(report.mode, "fixed");
    }
}
