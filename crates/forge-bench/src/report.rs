//! Tables (plain text for the terminal, Markdown for the README) built from a [`ResultsFile`].

use crate::error::{BenchError, Result};
use crate::schema::{Aggregate, MeanStd, ResultsFile, StrategyKind};

/// A simple table: headers and rows of cells.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    /// Title printed above the table.
    pub title: String,
    /// Column headers.
    pub headers: Vec<String>,
    /// Rows.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// Renders aligned plain text (first column left-aligned, the others right-aligned).
    pub fn to_text(&self) -> String {
        let ncol = self.headers.len();
        let mut w: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate().take(ncol) {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let fmt_row = |cells: &[String]| -> String {
            let mut s = String::new();
            for (i, c) in cells.iter().enumerate().take(ncol) {
                let pad = w[i] - c.chars().count();
                if i == 0 {
                    s.push_str(c);
                    s.push_str(&" ".repeat(pad));
                } else {
                    s.push_str("  ");
                    s.push_str(&" ".repeat(pad));
                    s.push_str(c);
                }
            }
            s.trim_end().to_string()
        };
        let mut out = format!("{}\n", self.title);
        out.push_str(&fmt_row(&self.headers));
        out.push('\n');
        let total: usize = w.iter().sum::<usize>() + 2 * ncol.saturating_sub(1);
        out.push_str(&"-".repeat(total));
        out.push('\n');
        for r in &self.rows {
            out.push_str(&fmt_row(r));
            out.push('\n');
        }
        out
    }

    /// Renders a GitHub-flavoured Markdown table (with the title in bold above it).
    pub fn to_markdown(&self) -> String {
        let mut out = format!("**{}**\n\n", self.title);
        out.push_str(&format!("| {} |\n", self.headers.join(" | ")));
        let aligns: Vec<&str> = (0..self.headers.len())
            .map(|i| if i == 0 { "---" } else { "---:" })
            .collect();
        out.push_str(&format!("|{}|\n", aligns.join("|")));
        for r in &self.rows {
            out.push_str(&format!("| {} |\n", r.join(" | ")));
        }
        out
    }
}

/// Chooses a CO2 unit so that `max_kg` prints with a few digits: (factor from kg, label).
pub fn co2_unit(max_kg: f64) -> (f64, &'static str) {
    if max_kg >= 1e-1 {
        (1.0, "kg")
    } else if max_kg >= 1e-4 {
        (1e3, "g")
    } else if max_kg >= 1e-7 {
        (1e6, "mg")
    } else {
        (1e9, "µg")
    }
}

/// The CO2 unit for printing every strategy's mean CO2 in `r` (see [`co2_unit`]).
pub fn aggregate_co2_unit(r: &ResultsFile) -> (f64, &'static str) {
    let max = r
        .aggregates
        .iter()
        .map(|a| a.co2_kg.mean)
        .fold(0.0, f64::max);
    co2_unit(max)
}

fn ms(m: MeanStd, scale: f64, prec: usize) -> String {
    format!("{:.p$} ± {:.p$}", m.mean * scale, m.std * scale, p = prec)
}

fn pct(m: MeanStd) -> String {
    format!("{:+.1}% ± {:.1}", -m.mean, m.std)
}

fn signed(m: MeanStd) -> String {
    format!("{:+.3} ± {:.3}", m.mean, m.std)
}

/// The headline table in the seed's shape: scenario, baseline CO2, transfer CO2, reduction,
/// performance impact (plus the reduction with the source cost included, and the gate verdict).
pub fn headline_table(r: &ResultsFile) -> Table {
    let max = r
        .scenarios
        .iter()
        .map(|s| s.baseline_co2_kg.mean.max(s.transfer_co2_kg.mean))
        .fold(0.0, f64::max);
    let (f, unit) = co2_unit(max);
    let rows = r
        .scenarios
        .iter()
        .map(|s| {
            vec![
                s.scenario.clone(),
                format!("{:.3}", s.baseline_co2_kg.mean * f),
                format!("{:.3} ({})", s.transfer_co2_kg.mean * f, s.transfer),
                format!("{:.1}%", s.co2_reduction_pct.mean),
                format!("{:.1}%", s.co2_reduction_with_source_pct.mean),
                r.aggregates
                    .iter()
                    .find(|a| a.scenario == s.scenario && a.strategy == s.transfer)
                    .map(|a| format!("{:.0}%", a.step_reduction_pct.mean))
                    .unwrap_or_else(|| "-".into()),
                format!(
                    "{} {:.3} -> {:.3} ({:+.3})",
                    s.metric.short(),
                    s.baseline_quality.mean,
                    s.transfer_quality.mean,
                    s.quality_delta.mean
                ),
                s.gate_verdict.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    Table {
        title: format!(
            "Carbon savings of transfer vs training from scratch (CO2 per training in {unit}; mean over {} seed(s); negative reduction = more CO2)",
            r.run.seeds.len()
        ),
        headers: vec![
            "Scenario".into(),
            format!("Baseline CO2 [{unit}]"),
            format!("Transfer CO2 [{unit}]"),
            "Reduction".into(),
            "Reduction incl. source".into(),
            "Fewer grad steps".into(),
            "Performance impact".into(),
            "Gate".into(),
        ],
        rows,
    }
}

/// The per-method table: every scenario x strategy with quality, cost and saving (mean ± std).
pub fn method_table(r: &ResultsFile) -> Table {
    let (f, unit) = aggregate_co2_unit(r);
    let rows = r
        .aggregates
        .iter()
        .map(|a: &Aggregate| {
            let kind = match a.kind {
                StrategyKind::Baseline => "baseline",
                StrategyKind::Reference => "reference",
                StrategyKind::Transfer => "transfer",
            };
            vec![
                a.scenario.clone(),
                a.strategy.clone(),
                kind.to_string(),
                format!("{} {}", a.metric.short(), ms(a.quality, 1.0, 3)),
                signed(a.quality_delta),
                format!("{:.0}", a.trainable_params),
                format!("{:.0}", a.gradient_steps.mean),
                format!("{:.2}", a.wall_time_s.mean * 1e3),
                ms(a.co2_kg, f, 3),
                if a.kind == StrategyKind::Baseline {
                    "-".into()
                } else {
                    pct(a.co2_reduction_pct)
                },
            ]
        })
        .collect();
    Table {
        title: "Per-method results (mean ± std over seeds; CO2 change vs the from-scratch baseline, source cost excluded)".into(),
        headers: [
            "Scenario", "Strategy", "Role", "Quality", "Δ vs baseline", "Params", "Grad steps",
            "Wall [ms]",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("CO2 [{unit}]"), "CO2 change".into()])
        .collect(),
        rows,
    }
}

/// The convergence table: "transfer reaches scratch quality in K epochs vs M".
pub fn convergence_table(r: &ResultsFile) -> Table {
    let mut rows = Vec::new();
    for sc in &r.run.scenarios {
        let sums: Vec<_> = r
            .convergence_summaries
            .iter()
            .filter(|c| &c.scenario == sc)
            .collect();
        if sums.is_empty() {
            continue;
        }
        let fmt = |v: Vec<Option<u32>>| -> String {
            let got: Vec<f64> = v.iter().flatten().map(|&e| f64::from(e)).collect();
            if got.is_empty() {
                return "never".into();
            }
            let m = crate::stats::mean_std(&got);
            let miss = v.len() - got.len();
            let mut s = format!("{:.1}", m.mean);
            if miss > 0 {
                s.push_str(&format!(" ({miss} seed(s) never)"));
            }
            s
        };
        let fin = crate::stats::mean_std(&sums.iter().map(|c| c.scratch_final).collect::<Vec<_>>());
        rows.push(vec![
            sc.clone(),
            format!("{:.3}", fin.mean),
            fmt(sums.iter().map(|c| c.scratch_epochs).collect()),
            fmt(sums.iter().map(|c| c.transfer_epochs).collect()),
        ]);
    }
    Table {
        title: format!(
            "Convergence: epochs of SGD to come within {} of the scratch model's final quality (mean over seeds)",
            crate::runner::CONVERGENCE_TOLERANCE
        ),
        headers: vec![
            "Scenario".into(),
            "Scratch final quality".into(),
            "Scratch epochs".into(),
            "Warm-start epochs".into(),
        ],
        rows,
    }
}

/// The transfer gate's decisions per scenario and seed.
pub fn gate_table(r: &ResultsFile) -> Table {
    let rows = r
        .gate
        .iter()
        .map(|g| {
            let stats: Vec<String> = g
                .statistics
                .iter()
                .map(|s| {
                    format!(
                        "{}={:.3}{}",
                        s.name,
                        s.value,
                        if s.flagged { "!" } else { "" }
                    )
                })
                .collect();
            vec![
                g.scenario.clone(),
                g.seed.to_string(),
                g.verdict.clone(),
                match g.transfer_hurt {
                    Some(true) => "yes".into(),
                    Some(false) => "no".into(),
                    None => "-".into(),
                },
                stats.join(" "),
            ]
        })
        .collect();
    Table {
        title: "Transfer gate (! = statistic past its threshold)".into(),
        headers: vec![
            "Scenario".into(),
            "Seed".into(),
            "Verdict".into(),
            "Transfer hurt?".into(),
            "Statistics".into(),
        ],
        rows,
    }
}

/// One paragraph saying how CO2 was obtained, on which machine.
pub fn carbon_note(r: &ResultsFile) -> String {
    format!(
        "Energy: {} on {} ({} logical CPUs, {}); {} g CO2e/kWh ({}), PUE {}. {}",
        r.carbon.energy_method,
        r.machine.cpu_model,
        r.machine.logical_cpus,
        r.machine.os,
        r.carbon.carbon_intensity_g_per_kwh,
        r.carbon.region,
        r.carbon.pue,
        r.carbon.note
    )
}

/// As [`carbon_note`] for a meter's settings on this machine (no results file needed).
pub fn carbon_note_for(c: &crate::schema::CarbonSettings) -> String {
    let m = crate::schema::MachineInfo::detect();
    format!(
        "Energy: {} on {} ({} logical CPUs); {} g CO2e/kWh ({}), PUE {}. {}",
        c.energy_method,
        m.cpu_model,
        m.logical_cpus,
        c.carbon_intensity_g_per_kwh,
        c.region,
        c.pue,
        c.note
    )
}

/// The generated README section (Markdown, without the markers).
pub fn readme_section(r: &ResultsFile, command: &str) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "Results of `{command}` (mode {}, seeds {:?}, {:.1} s wall time). Regenerate this section with \
         `cargo xtask readme --results PATH`.\n\n",
        r.run.mode, r.run.seeds, r.run.total_wall_s
    ));
    s.push_str(&headline_table(r).to_markdown());
    s.push('\n');
    let conv = convergence_table(r);
    if !conv.rows.is_empty() {
        s.push_str(&conv.to_markdown());
        s.push('\n');
    }
    s.push_str(&format!(
        "*How CO2 was obtained:* {}\n\n*Baseline:* the same mini-batch SGD, started from zero and run to \
         convergence on the same target training data; the headline transfer warm-starts that SGD from \
         the source model and stops with the same rule. \"Reduction incl. source\" charges the whole \
         cost of training the source model to this one task (worst case); the plain reduction treats \
         it as a shared, already-paid cost. Per-method numbers: `cargo xtask demo`; schema: \
         `docs/results-schema.md`.\n",
        carbon_note(r)
    ));
    s
}

/// Marker that opens the generated README section.
pub const README_BEGIN: &str = "<!-- BEGIN DEMO RESULTS -->";
/// Marker that closes the generated README section.
pub const README_END: &str = "<!-- END DEMO RESULTS -->";

/// Replaces the text between [`README_BEGIN`] and [`README_END`] in `readme` by `section`,
/// leaving everything else byte-for-byte unchanged.
///
/// # Errors
/// [`BenchError::ReadmeMarkers`] if a marker is missing, repeated or out of order.
pub fn splice_readme(readme: &str, section: &str) -> Result<String> {
    let count = |m: &str| readme.matches(m).count();
    if count(README_BEGIN) != 1 || count(README_END) != 1 {
        return Err(BenchError::ReadmeMarkers(format!(
            "expected exactly one {README_BEGIN} and one {README_END}"
        )));
    }
    let b = readme.find(README_BEGIN).unwrap_or(0) + README_BEGIN.len();
    let e = readme.find(README_END).unwrap_or(0);
    if e < b {
        return Err(BenchError::ReadmeMarkers(format!(
            "{README_END} comes before {README_BEGIN}"
        )));
    }
    Ok(format!(
        "{}\n{}{}",
        &readme[..b],
        section.trim_end_matches('\n').to_string() + "\n",
        &readme[e..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_replaces_only_the_section() {
        let readme = format!("head\n{README_BEGIN}\nold\n{README_END}\ntail\n");
        let out = splice_readme(&readme, "new table\n").unwrap();
        assert_eq!(
            out,
            format!("head\n{README_BEGIN}\nnew table\n{README_END}\ntail\n")
        );
        // idempotent
        assert_eq!(splice_readme(&out, "new table").unwrap(), out);
        assert!(splice_readme("no markers", "x").is_err());
        assert!(splice_readme(&format!("{README_END}{README_BEGIN}"), "x").is_err());
    }

    #[test]
    fn co2_units_pick_readable_scales() {
        assert_eq!(co2_unit(2.0).1, "kg");
        assert_eq!(co2_unit(2e-3).1, "g");
        assert_eq!(co2_unit(2e-6).1, "mg");
        assert_eq!(co2_unit(2e-9).1, "µg");
    }

    #[test]
    fn text_table_aligns_columns() {
        let t = Table {
            title: "T".into(),
            headers: vec!["a".into(), "bb".into()],
            rows: vec![vec!["xyz".into(), "1".into()]],
        };
        assert_eq!(t.to_text(), "T\na    bb\n-------\nxyz   1\n");
    }
}
