//! When the spacecraft can talk to the ground, and how much it may send: the passes over the
//! mission's ground stations predicted from the TLE (overlapping passes over two stations are one
//! contact: one radio), or a continuous contact on a bench. A contact's byte budget is the
//! downlink rate times its duration.

use kestrel_thermal::config::LoadedThermalMission;
use kestrel_thermal::events;
use kestrel_thermal::orbit::OrbitError;

use crate::config::Contacts;

/// Mission time predicted ahead at a time.
const HORIZON_MS: i64 = 24 * 3600 * 1000;
/// Budget period of a continuous contact.
const CONTINUOUS_WINDOW_MS: i64 = 60_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contact {
    /// Stable number of the contact: its start time; 0 for the one continuous contact, whose
    /// budget windows follow one another on one connection.
    pub id: u64,
    pub start_ms: i64,
    pub end_ms: i64,
    pub budget_bytes: u64,
}

#[derive(Debug)]
pub struct ContactPlan {
    kind: Contacts,
    thermal: LoadedThermalMission,
    rate_bps: u64,
    /// Predicted windows, merged, sorted; valid until `predicted_until`.
    windows: Vec<(i64, i64)>,
    predicted_from: i64,
    predicted_until: i64,
}

impl ContactPlan {
    pub fn new(kind: Contacts, thermal: LoadedThermalMission, rate_bps: u64) -> Self {
        Self { kind, thermal, rate_bps, windows: Vec::new(), predicted_from: i64::MAX, predicted_until: i64::MIN }
    }

    fn contact(&self, start_ms: i64, end_ms: i64) -> Contact {
        let budget_bytes = (self.rate_bps as f64 / 8.0 * (end_ms - start_ms) as f64 / 1000.0) as u64;
        Contact { id: start_ms as u64, start_ms, end_ms, budget_bytes }
    }

    /// The contact under way at `now_ms`, if any.
    pub fn current(&mut self, now_ms: i64) -> Result<Option<Contact>, OrbitError> {
        if self.kind == Contacts::Continuous {
            let start = now_ms - now_ms.rem_euclid(CONTINUOUS_WINDOW_MS);
            return Ok(Some(Contact { id: 0, ..self.contact(start, start + CONTINUOUS_WINDOW_MS) }));
        }
        self.predict(now_ms)?;
        Ok(self.windows.iter().find(|(s, e)| *s <= now_ms && now_ms < *e).map(|&(s, e)| self.contact(s, e)))
    }

    /// When the first contact that begins at or after `t_ms` begins; none for a continuous contact.
    pub fn next_start_after(&mut self, t_ms: i64) -> Result<Option<i64>, OrbitError> {
        if self.kind == Contacts::Continuous {
            return Ok(None);
        }
        self.predict(t_ms)?;
        Ok(self.windows.iter().map(|w| w.0).find(|&start| start >= t_ms))
    }

    /// Makes sure the windows cover `now_ms` to a day after it.
    fn predict(&mut self, now_ms: i64) -> Result<(), OrbitError> {
        if self.predicted_from <= now_ms && now_ms + HORIZON_MS / 2 <= self.predicted_until {
            return Ok(());
        }
        // start an hour back so a contact under way at `now_ms` is found whole
        let (start, end) = (now_ms - 3_600_000, now_ms + HORIZON_MS);
        let mut passes = Vec::new();
        for station in &self.thermal.config.thermal.ground_stations {
            for pass in events::passes(&self.thermal.orbit, station, start as f64 / 1000.0, end as f64 / 1000.0)? {
                passes.push(((pass.aos_unix * 1000.0) as i64, (pass.los_unix * 1000.0) as i64));
            }
        }
        passes.sort_unstable();
        let mut merged: Vec<(i64, i64)> = Vec::new();
        for (s, e) in passes {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        self.windows = merged;
        self.predicted_from = start;
        self.predicted_until = end;
        Ok(())
    }
}
