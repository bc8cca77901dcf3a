//! Mission time: the system clock in deployment; in the demo and the tests a simulated clock that
//! runs `speedup` times faster than the wall clock from where the mission (or the checkpoint)
//! left it, so a day of orbits passes in minutes and a restart does not turn time back.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy)]
pub enum Clock {
    Real,
    Simulated { start_ms: i64, started: Instant, speedup: f64 },
}

impl Clock {
    /// A simulated clock that reads `start_ms` now and runs `speedup` times the wall clock.
    pub fn simulated(start_ms: i64, speedup: f64) -> Self {
        Self::Simulated { start_ms, started: Instant::now(), speedup }
    }

    /// Mission time, ms since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        match *self {
            Self::Real => SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64),
            Self::Simulated { start_ms, started, speedup } => {
                start_ms + (started.elapsed().as_secs_f64() * 1000.0 * speedup) as i64
            }
        }
    }

    /// How many mission seconds pass per wall-clock second.
    pub fn speedup(&self) -> f64 {
        match *self {
            Self::Real => 1.0,
            Self::Simulated { speedup, .. } => speedup,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_simulated_clock_runs_faster_from_where_it_starts() {
        let clock = Clock::simulated(1_000_000, 1000.0);
        let first = clock.now_ms();
        assert!(first >= 1_000_000);
        std::thread::sleep(Duration::from_millis(20));
        let elapsed = clock.now_ms() - first;
        assert!(elapsed >= 19_000, "20 ms of wall time is at least 19 s of mission time, got {elapsed} ms");
        assert_eq!(clock.speedup(), 1000.0);
    }
}
