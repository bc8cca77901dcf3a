//! The campaign report: every injection with its outcome (NVBitFI's classes), the outcomes per
//! fault kind, and the invariants — products lost, duplicated, corrupt accepted — as JSON and as
//! a table.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use serde::Serialize;

use crate::plan::Plan;

/// What an injected fault led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Nothing observable: no crash, no hang, nothing detected, the products as the reference's.
    Masked,
    /// Detected and handled in place (an error reported, corrected data, a resend).
    DetectedCorrected,
    /// Detected (crash, hang, corrupt checkpoint) and recovered by a restart from the checkpoint.
    DetectedRecovered,
    /// Nothing seen at the time, in a run whose products differ from the reference: masked or
    /// the silent data corruption found at the end.
    MaskedOrSilent,
    /// A hang or crash that no restart recovered.
    Unrecovered,
    /// The fault could not be injected (no process at that instant, no checkpoint file yet).
    NotInjected,
}

impl Outcome {
    /// Every outcome, in the report's column order.
    pub const ALL: [Self; 6] = [
        Self::Masked,
        Self::DetectedCorrected,
        Self::DetectedRecovered,
        Self::MaskedOrSilent,
        Self::Unrecovered,
        Self::NotInjected,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::Masked => "masked",
            Self::DetectedCorrected => "detected, corrected",
            Self::DetectedRecovered => "detected, recovered",
            Self::MaskedOrSilent => "masked or SDC",
            Self::Unrecovered => "unrecovered",
            Self::NotInjected => "not injected",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Injection {
    pub kind: String,
    /// Seconds since the campaign started.
    pub at_s: f64,
    pub detail: String,
    pub outcome: Outcome,
    /// What showed the outcome: the flight log's message, the exit, the watchdog.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
}

/// The ground archive against the undisturbed reference run, frame products only.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Invariants {
    pub products_expected: usize,
    pub products_archived: usize,
    /// In the reference, not in the archive.
    pub lost: usize,
    /// Extra copies of a reference product's content under another id.
    pub duplicated: usize,
    /// In the archive with content the reference does not have: silent data corruption.
    pub corrupt_accepted: usize,
    /// Which: "<id in hex> <kind>".
    pub corrupt_products: Vec<String>,
    /// Whether the final run processed everything and emptied its queue.
    pub drained: bool,
    /// Products the ground refused (content CRC, envelope): corruption detected, not accepted.
    pub ground_rejected: u64,
    /// Products that arrived under a stored id with other content: kept out, reported.
    pub ground_conflicts: u64,
}

impl Invariants {
    pub fn compare(
        expected: &BTreeMap<u64, (String, u32)>,
        archived: &BTreeMap<u64, (String, u32)>,
        drained: bool,
        ground_rejected: u64,
        ground_conflicts: u64,
    ) -> Self {
        let lost = expected.keys().filter(|id| !archived.contains_key(id)).count();
        let mut content: BTreeMap<&(String, u32), usize> = BTreeMap::new();
        for value in expected.values() {
            *content.entry(value).or_default() += 1;
        }
        let mut duplicated = 0;
        let mut corrupt_products = Vec::new();
        for (id, value) in archived {
            match expected.get(id) {
                Some(reference) if reference == value => {}
                None if content.contains_key(value) => duplicated += 1,
                _ => corrupt_products.push(format!("{id:016x} {}", value.0)),
            }
        }
        Self {
            products_expected: expected.len(),
            products_archived: archived.len(),
            lost,
            duplicated,
            corrupt_accepted: corrupt_products.len(),
            corrupt_products,
            drained,
            ground_rejected,
            ground_conflicts,
        }
    }

    /// The invariants that broke, by name.
    pub fn broken(&self) -> Vec<String> {
        let mut broken = Vec::new();
        if self.lost > 0 {
            broken.push(format!("products lost: {}", self.lost));
        }
        if self.duplicated > 0 {
            broken.push(format!("products duplicated: {}", self.duplicated));
        }
        if self.corrupt_accepted > 0 {
            let mut which = self.corrupt_products.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
            if self.corrupt_accepted > 3 {
                which.push_str(&format!(" and {} more", self.corrupt_accepted - 3));
            }
            broken.push(format!("corrupt products accepted: {} ({which})", self.corrupt_accepted));
        }
        if !self.drained {
            broken.push("the pipeline did not drain after the faults (hang)".into());
        }
        broken
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub plan: String,
    pub seed: u64,
    pub frames: usize,
    pub seconds: f64,
    /// Starts of the flight process in the campaign run (the first one included).
    pub flight_starts: usize,
    /// Per fault kind: outcome -> count.
    pub outcomes: BTreeMap<String, BTreeMap<Outcome, usize>>,
    pub invariants: Invariants,
    pub broken: Vec<String>,
    pub injections: Vec<Injection>,
}

impl Report {
    pub fn new(
        plan: &Plan,
        seed: u64,
        injections: Vec<Injection>,
        invariants: Invariants,
        flight_starts: usize,
        took: Duration,
    ) -> Self {
        let mut outcomes: BTreeMap<String, BTreeMap<Outcome, usize>> = BTreeMap::new();
        for injection in &injections {
            *outcomes.entry(injection.kind.clone()).or_default().entry(injection.outcome).or_default() += 1;
        }
        Self {
            plan: plan.path.display().to_string(),
            seed,
            frames: plan.frames.len(),
            seconds: took.as_secs_f64(),
            flight_starts,
            outcomes,
            broken: invariants.broken(),
            invariants,
            injections,
        }
    }

    pub fn passed(&self) -> bool {
        self.broken.is_empty()
    }

    /// The report as an operator reads it.
    pub fn to_text(&self) -> String {
        let columns = Outcome::ALL;
        let mut text = format!(
            "radiation-sim campaign: plan {}, seed {}, {} frames, {:.0} s, {} flight starts\n\n",
            self.plan, self.seed, self.frames, self.seconds, self.flight_starts
        );
        let _ = write!(text, "| fault | injections |");
        for column in columns {
            let _ = write!(text, " {} |", column.label());
        }
        let _ = writeln!(text, "\n|---|---:|{}", "---:|".repeat(columns.len()));
        for (kind, counts) in &self.outcomes {
            let _ = write!(text, "| {kind} | {} |", counts.values().sum::<usize>());
            for column in columns {
                let _ = write!(text, " {} |", counts.get(&column).copied().unwrap_or(0));
            }
            text.push('\n');
        }
        let i = &self.invariants;
        let _ = writeln!(
            text,
            "\nframe products: {} expected, {} archived; lost {}, duplicated {}, corrupt accepted {}; \
             drained: {}; refused at the ground: {} corrupt, {} conflicting",
            i.products_expected,
            i.products_archived,
            i.lost,
            i.duplicated,
            i.corrupt_accepted,
            if i.drained { "yes" } else { "no" },
            i.ground_rejected,
            i.ground_conflicts
        );
        if self.passed() {
            text.push_str("invariants: all held\n");
        } else {
            let _ = writeln!(text, "invariants BROKEN: {}", self.broken.join("; "));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn products(list: &[(u64, &str, u32)]) -> BTreeMap<u64, (String, u32)> {
        list.iter().map(|(id, kind, crc)| (*id, (kind.to_string(), *crc))).collect()
    }

    #[test]
    fn the_archive_is_held_to_the_reference() {
        let expected = products(&[(1, "Chip", 10), (2, "Chip", 20), (3, "Detections", 30)]);
        let same = Invariants::compare(&expected, &expected, true, 0, 0);
        assert!(same.broken().is_empty());
        let archived = products(&[(1, "Chip", 10), (2, "Chip", 21), (9, "Detections", 30), (8, "Chip", 99)]);
        let found = Invariants::compare(&expected, &archived, false, 2, 1);
        assert_eq!((found.lost, found.duplicated, found.corrupt_accepted), (1, 1, 2));
        let broken = found.broken().join("; ");
        for name in ["products lost: 1", "products duplicated: 1", "corrupt products accepted: 2", "did not drain"] {
            assert!(broken.contains(name), "{broken}");
        }
    }
}
