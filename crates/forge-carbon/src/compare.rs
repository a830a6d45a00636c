//! Comparing runs: savings in % against a baseline and human-scale equivalents.
//!
//! Factors:
//! - Car travel: [`KG_CO2_PER_KM_CAR`] = 0.2485 kg/km — US EPA, "Greenhouse Gas Emissions from a
//!   Typical Passenger Vehicle" (EPA-420-F-23-014, 2023): about 400 g CO2 per mile = 400/1.609344 g/km.
//! - Trees: [`KG_CO2_PER_TREE_MONTH`] = 11/12 kg — a mature tree sequesters about 11 kg CO2 per year,
//!   the factor of Green Algorithms (Lannelongue, Grealey & Inouye 2021, Adv. Sci. 8:2100707), so
//!   `tree-months = kg / (11/12)`.
//!
//! Savings: `100 x (baseline - run) / baseline` (positive = the run used less); `None` when the
//! baseline value is 0.

use serde::{Deserialize, Serialize};

use crate::emissions::Emissions;

/// kg CO2 per km driven by an average passenger car (US EPA 2023: 400 g/mile).
pub const KG_CO2_PER_KM_CAR: f64 = 0.400 / 1.609_344;

/// kg CO2 sequestered by one mature tree in one month (11 kg/year, Green Algorithms).
pub const KG_CO2_PER_TREE_MONTH: f64 = 11.0 / 12.0;

/// Human-scale equivalents of an amount of CO2.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Equivalents {
    /// Kilometres driven by an average passenger car.
    pub km_driven: f64,
    /// Months of CO2 uptake by one mature tree.
    pub tree_months: f64,
}

/// Equivalents of `kg` kg CO2-eq.
pub fn equivalents(kg: f64) -> Equivalents {
    Equivalents {
        km_driven: kg / KG_CO2_PER_KM_CAR,
        tree_months: kg / KG_CO2_PER_TREE_MONTH,
    }
}

/// One run's totals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Label of the run.
    pub label: String,
    /// Duration, s.
    pub duration_s: f64,
    /// Energy, kWh.
    pub energy_kwh: f64,
    /// Emissions, kg CO2-eq.
    pub emissions_kg: f64,
    /// Equivalents of `emissions_kg`.
    pub equivalents: Equivalents,
}

impl RunSummary {
    fn of(label: &str, e: &Emissions) -> Self {
        Self {
            label: label.to_string(),
            duration_s: e.duration_s,
            energy_kwh: e.energy_kwh,
            emissions_kg: e.emissions_kg,
            equivalents: equivalents(e.emissions_kg),
        }
    }
}

/// One run compared with the baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunComparison {
    /// The run's totals.
    pub run: RunSummary,
    /// Energy saved vs the baseline, %.
    pub energy_savings_pct: Option<f64>,
    /// Emissions saved vs the baseline, %.
    pub emissions_savings_pct: Option<f64>,
    /// Time saved vs the baseline, %.
    pub duration_savings_pct: Option<f64>,
    /// Energy ratio run / baseline.
    pub energy_ratio: Option<f64>,
    /// kg CO2-eq saved (baseline - run; negative = more emitted).
    pub emissions_saved_kg: f64,
    /// Equivalents of `emissions_saved_kg`.
    pub saved_equivalents: Equivalents,
}

/// The result of [`compare_emissions`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The baseline's totals.
    pub baseline: RunSummary,
    /// Every other run against the baseline, in input order.
    pub runs: Vec<RunComparison>,
}

fn savings(base: f64, x: f64) -> Option<f64> {
    (base > 0.0).then(|| 100.0 * (base - x) / base)
}

/// Compares `others` (label, emissions) with `baseline`. See the module docs for the formulas.
pub fn compare_emissions(baseline: &Emissions, others: &[(&str, &Emissions)]) -> Comparison {
    let base = RunSummary::of("baseline", baseline);
    let runs = others
        .iter()
        .map(|(label, e)| {
            let saved = baseline.emissions_kg - e.emissions_kg;
            RunComparison {
                run: RunSummary::of(label, e),
                energy_savings_pct: savings(baseline.energy_kwh, e.energy_kwh),
                emissions_savings_pct: savings(baseline.emissions_kg, e.emissions_kg),
                duration_savings_pct: savings(baseline.duration_s, e.duration_s),
                energy_ratio: (baseline.energy_kwh > 0.0)
                    .then(|| e.energy_kwh / baseline.energy_kwh),
                emissions_saved_kg: saved,
                saved_equivalents: equivalents(saved),
            }
        })
        .collect();
    Comparison {
        baseline: base,
        runs,
    }
}

impl Comparison {
    /// A Markdown table of the comparison (for reports; the library never prints it).
    pub fn to_markdown(&self) -> String {
        let pct = |x: Option<f64>| x.map_or("n/a".to_string(), |v| format!("{v:.1}%"));
        let mut s = String::from(
            "| run | energy (kWh) | CO2 (kg) | energy saved | CO2 saved | km driven saved | tree-months saved |\n|---|---|---|---|---|---|---|\n",
        );
        s.push_str(&format!(
            "| {} | {:.3e} | {:.3e} | - | - | - | - |\n",
            self.baseline.label, self.baseline.energy_kwh, self.baseline.emissions_kg
        ));
        for r in &self.runs {
            s.push_str(&format!(
                "| {} | {:.3e} | {:.3e} | {} | {} | {:.3e} | {:.3e} |\n",
                r.run.label,
                r.run.energy_kwh,
                r.run.emissions_kg,
                pct(r.energy_savings_pct),
                pct(r.emissions_savings_pct),
                r.saved_equivalents.km_driven,
                r.saved_equivalents.tree_months
            ));
        }
        s
    }
}
