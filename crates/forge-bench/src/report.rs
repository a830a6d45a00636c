//! Tables (plain text for the terminal, Markdown for the README) built from a [`ResultsFile`].
//!
//! Everything here is scenario-agnostic: the words for a scenario's baseline, transfer and
//! protocol come from its [`Wording`](crate::schema::Wording) in the results file, and what the
//! transfer gate judged from the gate records. The default tables fit in [`TERMINAL_WIDTH`]
//! columns; the `*_details` tables carry every column for `--verbose`.

use crate::error::{BenchError, Result};
use crate::schema::{Aggregate, MeanStd, MeasurePolicy, ResultsFile, StrategyKind};
use std::collections::BTreeMap;

/// The terminal width the default tables and notes are laid out for.
pub const TERMINAL_WIDTH: usize = 100;

/// A simple table: headers, rows of cells, and notes printed under it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    /// Title printed above the table.
    pub title: String,
    /// Column headers.
    pub headers: Vec<String>,
    /// Rows.
    pub rows: Vec<Vec<String>>,
    /// Footnotes printed under the table (each wrapped to [`TERMINAL_WIDTH`] in text).
    pub notes: Vec<String>,
}

/// Greedy word wrap of `text` to lines of at most `width` characters (a word longer than
/// `width` gets a line of its own); continuation lines are indented by `indent` spaces.
pub fn wrap(text: &str, width: usize, indent: usize) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let len = line.chars().count();
        if !line.trim().is_empty() && len + 1 + word.chars().count() > width {
            out.push_str(line.trim_end());
            out.push('\n');
            line = " ".repeat(indent);
        } else if len > 0 && !line.trim().is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(line.trim_end());
    out
}

impl Table {
    /// Renders aligned plain text (first column left-aligned, the others right-aligned), the
    /// title and notes wrapped to [`TERMINAL_WIDTH`].
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
        let mut out = format!("{}\n", wrap(&self.title, TERMINAL_WIDTH, 2));
        out.push_str(&fmt_row(&self.headers));
        out.push('\n');
        let total: usize = w.iter().sum::<usize>() + 2 * ncol.saturating_sub(1);
        out.push_str(&"-".repeat(total));
        out.push('\n');
        for r in &self.rows {
            out.push_str(&fmt_row(r));
            out.push('\n');
        }
        for n in &self.notes {
            out.push_str(&wrap(n, TERMINAL_WIDTH, 2));
            out.push('\n');
        }
        out
    }

    /// Renders a GitHub-flavoured Markdown table (with the title in bold above it and the
    /// notes as a paragraph under it).
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
        if !self.notes.is_empty() {
            out.push('\n');
            out.push_str(&self.notes.join(" "));
            out.push('\n');
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

/// A parameter count in few characters: `12`, `12.3k`, `1.23M`, `4.56G`.
pub fn count(n: f64) -> String {
    let a = n.abs();
    if a < 1e4 {
        format!("{n:.0}")
    } else if a < 1e6 {
        format!("{:.1}k", n / 1e3)
    } else if a < 1e9 {
        format!("{:.2}M", n / 1e6)
    } else {
        format!("{:.2}G", n / 1e9)
    }
}

/// A duration in few characters: `850 µs`, `12.3 ms`, `4.56 s`, `2.1 min`, `1.5 h`.
pub fn duration(s: f64) -> String {
    if !s.is_finite() {
        format!("{s}")
    } else if s < 1e-3 {
        format!("{:.0} µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.1} ms", s * 1e3)
    } else if s < 120.0 {
        format!("{s:.2} s")
    } else if s < 7200.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

fn role(k: StrategyKind) -> &'static str {
    match k {
        StrategyKind::Baseline => "baseline",
        StrategyKind::Reference => "reference",
        StrategyKind::Transfer => "transfer",
    }
}

/// A short verdict for narrow tables (`transfer_with_caution` -> `caution`).
pub fn short_verdict(v: &str) -> &str {
    match v {
        "transfer_with_caution" => "caution",
        other => other,
    }
}

/// `items` grouped by a key, groups in first-seen order: (key, items).
fn group_by<T, K: PartialEq + Clone>(items: impl IntoIterator<Item = (K, T)>) -> Vec<(K, Vec<T>)> {
    let mut out: Vec<(K, Vec<T>)> = Vec::new();
    for (k, t) in items {
        match out.iter_mut().find(|(g, _)| *g == k) {
            Some(g) => g.1.push(t),
            None => out.push((k, vec![t])),
        }
    }
    out
}

/// The headline table, one row per scenario: baseline CO2, headline-transfer CO2, the reduction
/// with and without the source cost, fewer gradient steps, the quality change and the transfer
/// gate's majority verdict. The notes say, per scenario, which strategies are compared and
/// what the gate judged (which need not be the row's transfer).
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
                format!("{:.3}", s.transfer_co2_kg.mean * f),
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
                s.gate_verdict
                    .as_deref()
                    .map(short_verdict)
                    .unwrap_or("-")
                    .to_string(),
            ]
        })
        .collect();
    let mut notes = Vec::new();
    let pairs = group_by(r.scenarios.iter().map(|s| {
        let label = |name: &str, words: &str| {
            if words.is_empty() || words == name {
                name.to_string()
            } else {
                format!("{name} ({words})")
            }
        };
        (
            format!(
                "baseline {}, transfer {}",
                label(&s.baseline, &s.wording.baseline),
                label(&s.transfer, &s.wording.transfer)
            ),
            s.scenario.clone(),
        )
    }));
    for (pair, scen) in pairs {
        notes.push(format!("{}: {pair}.", scen.join(", ")));
    }
    notes.push(
        "Saved = CO2 reduction of the transfer vs the baseline (negative = more CO2); +source = \
         the same with the source model's training charged to this task; Steps = fewer \
         gradient steps."
            .into(),
    );
    let subjects = group_by(r.scenarios.iter().filter_map(|s| {
        s.gate_verdict.as_ref()?;
        Some((
            s.gate_subject
                .clone()
                .unwrap_or_else(|| "(not recorded)".into()),
            s.scenario.clone(),
        ))
    }));
    for (subject, scen) in subjects {
        notes.push(format!(
            "Gate ({}): forge-safety's verdict on {subject}; it judges that transfer, not the \
             row's ({} seed(s), majority; caution = transfer_with_caution).",
            scen.join(", "),
            r.run.seeds.len()
        ));
    }
    Table {
        title: format!(
            "Transfer vs baseline: CO2 per training in {unit} (mean over {} seed(s))",
            r.run.seeds.len()
        ),
        headers: [
            "Scenario", "Baseline", "Transfer", "Saved", "+source", "Steps", "Quality", "Gate",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        rows,
        notes,
    }
}

/// One compact table per scenario (every strategy: role, quality mean ± std, change vs the
/// baseline, trainable parameters, gradient steps, wall time, CO2 and its change).
pub fn method_tables(r: &ResultsFile) -> Vec<Table> {
    let (f, unit) = aggregate_co2_unit(r);
    let mut out = Vec::new();
    for sc in &r.run.scenarios {
        let aggs: Vec<&Aggregate> = r.aggregates.iter().filter(|a| &a.scenario == sc).collect();
        let Some(first) = aggs.first() else {
            continue;
        };
        let desc = r
            .scenarios
            .iter()
            .find(|s| &s.scenario == sc)
            .map(|s| s.description.clone())
            .unwrap_or_default();
        let rows = aggs
            .iter()
            .map(|a| {
                vec![
                    a.strategy.clone(),
                    role(a.kind).to_string(),
                    ms(a.quality, 1.0, 3),
                    format!("{:+.3}", a.quality_delta.mean),
                    count(a.trainable_params),
                    count(a.gradient_steps.mean),
                    duration(a.wall_time_s.mean),
                    format!("{:.3}", a.co2_kg.mean * f),
                    if a.kind == StrategyKind::Baseline {
                        "-".into()
                    } else {
                        format!("{:+.0}%", -a.co2_reduction_pct.mean)
                    },
                ]
            })
            .collect();
        out.push(Table {
            title: if desc.is_empty() {
                sc.clone()
            } else {
                format!("{sc}: {desc}")
            },
            headers: vec![
                "Strategy".into(),
                "Role".into(),
                format!("Quality ({})", first.metric.short()),
                "Δ".into(),
                "Params".into(),
                "Steps".into(),
                "Wall".into(),
                format!("CO2 [{unit}]"),
                "Change".into(),
            ],
            rows,
            notes: Vec::new(),
        });
    }
    out
}

/// A metric value in few characters: counts and bytes as [`count`], others with 3 decimals.
fn metric_cell(v: f64) -> String {
    if v.abs() >= 1e4 {
        count(v)
    } else {
        format!("{v:.3}")
    }
}

/// One table per scenario of the extra metrics that tell its strategies apart (mean over
/// seeds; a metric equal for every strategy, such as a data-set size, is left out), e.g.
/// storage on disk, beside each strategy's quality (mean ± std). Scenarios without such metrics
/// get no table.
pub fn metric_tables(r: &ResultsFile) -> Vec<Table> {
    let mut out = Vec::new();
    for sc in &r.run.scenarios {
        let strategies: Vec<&str> = r
            .aggregates
            .iter()
            .filter(|a| &a.scenario == sc)
            .map(|a| a.strategy.as_str())
            .collect();
        let mut keys: Vec<&str> = Vec::new();
        for rec in r.records.iter().filter(|x| &x.scenario == sc) {
            for k in rec.extra_metrics.keys() {
                if !keys.contains(&k.as_str()) {
                    keys.push(k);
                }
            }
        }
        let mean = |st: &str, k: &str| crate::gates::mean_extra_metric(r, sc, st, k);
        keys.retain(|k| {
            let vals: Vec<f64> = strategies.iter().filter_map(|st| mean(st, k)).collect();
            let (lo, hi) = vals
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                    (a.min(v), b.max(v))
                });
            vals.len() > 1 && hi - lo > 1e-9 * hi.abs().max(1.0)
        });
        if keys.is_empty() {
            continue;
        }
        let quality = |st: &str| {
            r.aggregates
                .iter()
                .find(|a| &a.scenario == sc && a.strategy == st)
                .map_or_else(|| "-".into(), |a| ms(a.quality, 1.0, 3))
        };
        let metric = r
            .aggregates
            .iter()
            .find(|a| &a.scenario == sc)
            .map_or("quality", |a| a.metric.short());
        let rows = strategies
            .iter()
            .map(|st| {
                [st.to_string(), quality(st)]
                    .into_iter()
                    .chain(
                        keys.iter()
                            .map(|k| mean(st, k).map_or_else(|| "-".into(), metric_cell)),
                    )
                    .collect()
            })
            .collect();
        let title = format!(
            "{sc}: further metrics (mean over {} seed(s))",
            r.run.seeds.len()
        );
        let headers: Vec<String> = ["Strategy".to_string(), format!("Quality ({metric})")]
            .into_iter()
            .chain(keys.iter().map(|k| k.to_string()))
            .collect();
        out.extend(split_to_width(title, headers, rows, 2));
    }
    out
}

/// Splits a table whose text would be wider than [`TERMINAL_WIDTH`] into several with the same
/// first `fixed` columns and consecutive groups of the others (titles of the later ones marked
/// "continued"); a table that fits is returned as is.
fn split_to_width(
    title: String,
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
    fixed: usize,
) -> Vec<Table> {
    let width = |i: usize| {
        rows.iter()
            .filter_map(|r| r.get(i))
            .map(|c| c.chars().count())
            .chain(std::iter::once(headers[i].chars().count()))
            .max()
            .unwrap_or(0)
    };
    let fixed = fixed.min(headers.len());
    let base: usize = (0..fixed).map(|i| width(i) + 2).sum();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut used = base;
    for i in fixed..headers.len() {
        let w = width(i) + 2;
        match groups.last_mut() {
            Some(g) if used + w <= TERMINAL_WIDTH + 2 => g.push(i),
            _ => {
                groups.push(vec![i]);
                used = base;
            }
        }
        used += w;
    }
    if groups.len() <= 1 {
        return vec![Table {
            title,
            headers,
            rows,
            notes: Vec::new(),
        }];
    }
    let pick = |cells: &[String], g: &[usize]| -> Vec<String> {
        (0..fixed)
            .chain(g.iter().copied())
            .map(|i| cells.get(i).cloned().unwrap_or_default())
            .collect()
    };
    groups
        .iter()
        .enumerate()
        .map(|(k, g)| Table {
            title: if k == 0 {
                title.clone()
            } else {
                format!("{title} (continued)")
            },
            headers: pick(&headers, g),
            rows: rows.iter().map(|r| pick(r, g)).collect(),
            notes: Vec::new(),
        })
        .collect()
}

/// Experiments a year in the impact arithmetic (the seed's figure for a team that fine-tunes
/// daily).
pub const EXPERIMENTS_PER_YEAR: f64 = 10_000.0;

/// The seed's impact arithmetic, from this run's numbers: for each scenario whose headline
/// transfer emits less than its baseline, the CO2 saved per experiment scaled to
/// [`EXPERIMENTS_PER_YEAR`] experiments, in km driven by an average car and months of one
/// tree's uptake (forge-carbon's equivalents, the factors of `compare_emissions`). Empty when no
/// scenario saves anything. Source costs are excluded (shared, already paid); the note says so.
pub fn impact_table(r: &ResultsFile) -> Table {
    let mut rows = Vec::new();
    for s in &r.scenarios {
        let saved = s.baseline_co2_kg.mean - s.transfer_co2_kg.mean;
        if saved.is_nan() || saved <= 0.0 {
            continue;
        }
        let year = saved * EXPERIMENTS_PER_YEAR;
        let eq = forge_carbon::equivalents(year);
        let (f, u) = co2_unit(saved);
        rows.push(vec![
            s.scenario.clone(),
            s.transfer.clone(),
            format!("{:.3} {u}", saved * f),
            format!("{year:.3} kg"),
            format!("{:.1}", eq.km_driven),
            format!("{:.1}", eq.tree_months),
            format!("{:+.3}", s.quality_delta.mean),
        ]);
    }
    Table {
        title: format!(
            "Impact at scale: {} experiments a year with the transfer, not the baseline",
            EXPERIMENTS_PER_YEAR
        ),
        headers: [
            "Scenario",
            "Transfer",
            "Saved/exp",
            "Saved/year",
            "km driven",
            "Tree-months",
            "Quality",
        ]
        .map(String::from)
        .to_vec(),
        rows,
        notes: vec![format!(
            "Saved CO2 per experiment (mean over {} seed(s), source trainings excluded) x {}; \
             equivalents from forge-carbon's compare_emissions factors (average passenger car per \
             km, one mature tree's monthly uptake). Transfer = the scenario's headline transfer (its baseline \
             is in the first table); Quality = its mean change vs the baseline.",
            r.run.seeds.len(),
            EXPERIMENTS_PER_YEAR
        )],
    }
}

/// The per-method table with every column, all scenarios in one table (wide: `--verbose`).
pub fn method_table(r: &ResultsFile) -> Table {
    let (f, unit) = aggregate_co2_unit(r);
    let rows = r
        .aggregates
        .iter()
        .map(|a: &Aggregate| {
            vec![
                a.scenario.clone(),
                a.strategy.clone(),
                role(a.kind).to_string(),
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
        title: "Per-method results (mean ± std over seeds; CO2 change vs the scenario's baseline, source cost excluded)".into(),
        headers: [
            "Scenario", "Strategy", "Role", "Quality", "Δ vs baseline", "Params", "Grad steps",
            "Wall [ms]",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("CO2 [{unit}]"), "CO2 change".into()])
        .collect(),
        rows,
        notes: Vec::new(),
    }
}

/// The convergence table: epochs the baseline needs to come within the tolerance of its own
/// final quality, and epochs the headline transfer needs to reach that quality. The notes say
/// which strategies and what an epoch is, per scenario.
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
        let fin =
            crate::stats::mean_std(&sums.iter().map(|c| c.baseline_final).collect::<Vec<_>>());
        rows.push(vec![
            sc.clone(),
            format!("{:.3}", fin.mean),
            fmt(sums.iter().map(|c| c.baseline_epochs).collect()),
            fmt(sums.iter().map(|c| c.transfer_epochs).collect()),
        ]);
    }
    let with_rows: Vec<&String> = rows.iter().map(|r| &r[0]).collect();
    let notes = group_by(
        r.scenarios
            .iter()
            .filter(|s| with_rows.contains(&&s.scenario))
            .map(|s| {
                let w = &s.wording;
                let or = |a: &str, b: &str| {
                    if a.is_empty() {
                        b.to_string()
                    } else {
                        a.to_string()
                    }
                };
                (
                    format!(
                        "epochs are {}; baseline {}, transfer {}",
                        or(&w.curve_x, "epochs"),
                        or(&w.baseline, &s.baseline),
                        or(&w.transfer, &s.transfer)
                    ),
                    s.scenario.clone(),
                )
            }),
    )
    .into_iter()
    .map(|(text, scen)| format!("{}: {text}.", scen.join(", ")))
    .collect();
    Table {
        title: format!(
            "Convergence: epochs to come within {} of the baseline's final quality (mean over seeds)",
            crate::runner::CONVERGENCE_TOLERANCE
        ),
        headers: vec![
            "Scenario".into(),
            "Baseline final quality".into(),
            "Baseline epochs".into(),
            "Transfer epochs".into(),
        ],
        rows,
        notes,
    }
}

/// The transfer gate per scenario: verdicts over seeds, how often the judged transfer actually
/// hurt, and which statistics were past their thresholds. Per-seed values:
/// [`gate_details_table`].
pub fn gate_table(r: &ResultsFile) -> Table {
    let per = group_by(r.gate.iter().map(|g| (g.scenario.clone(), g)));
    let rows: Vec<Vec<String>> = per
        .iter()
        .map(|(sc, gs)| {
            let verdicts = group_by(gs.iter().map(|g| (short_verdict(&g.verdict), ())))
                .into_iter()
                .map(|(v, n)| format!("{v} {}", n.len()))
                .collect::<Vec<_>>()
                .join(", ");
            let known: Vec<bool> = gs.iter().filter_map(|g| g.transfer_hurt).collect();
            let hurt = if known.is_empty() {
                "-".to_string()
            } else {
                format!("{}/{}", known.iter().filter(|h| **h).count(), known.len())
            };
            let flagged = flagged_names(gs);
            let total: BTreeMap<&str, ()> = gs
                .iter()
                .flat_map(|g| g.statistics.iter().map(|s| (s.name.as_str(), ())))
                .collect();
            let flagged = format!("{} of {}", flagged.len(), total.len());
            vec![sc.clone(), verdicts, hurt, flagged]
        })
        .collect();
    let flagged_notes = group_by(per.iter().map(|(sc, gs)| (flagged_names(gs), sc.clone())))
        .into_iter()
        .filter(|(names, _)| !names.is_empty())
        .map(|(names, scen)| format!("Flagged in {}: {}.", scen.join(", "), names.join(", ")));
    let notes = group_by(
        r.gate
            .iter()
            .filter(|g| !g.subject.is_empty())
            .map(|g| (g.subject.clone(), g.scenario.clone())),
    )
    .into_iter()
    .map(|(subject, mut scen)| {
        scen.dedup();
        format!("Judged ({}): {subject}.", scen.join(", "))
    })
    .chain(flagged_notes)
    .chain(std::iter::once(
        "Hurt = seeds where the judged transfer scored worse than its no-transfer baseline on \
         the held-out test set. Values per seed: --verbose or the JSON."
            .to_string(),
    ))
    .collect();
    Table {
        title: "Transfer gate (verdicts over seeds; statistics past their thresholds)".into(),
        headers: vec![
            "Scenario".into(),
            "Verdicts".into(),
            "Hurt".into(),
            "Flagged".into(),
        ],
        rows,
        notes,
    }
}

/// The statistics past their thresholds in any of `gs`, sorted by name.
fn flagged_names(gs: &[&crate::schema::GateRecord]) -> Vec<String> {
    let names: std::collections::BTreeSet<&str> = gs
        .iter()
        .flat_map(|g| g.statistics.iter().filter(|s| s.flagged))
        .map(|s| s.name.as_str())
        .collect();
    names.into_iter().map(str::to_string).collect()
}

/// The transfer gate's decisions per scenario and seed with every statistic (wide: `--verbose`).
pub fn gate_details_table(r: &ResultsFile) -> Table {
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
        title: "Transfer gate per seed (! = statistic past its threshold)".into(),
        headers: vec![
            "Scenario".into(),
            "Seed".into(),
            "Verdict".into(),
            "Transfer hurt?".into(),
            "Statistics".into(),
        ],
        rows,
        notes: Vec::new(),
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

/// The notes printed after the tables, each one paragraph: each scenario group's protocol (in
/// its own words), how trainings were measured, the scenarios skipped and why, and the carbon
/// note.
pub fn footer(r: &ResultsFile) -> Vec<String> {
    let mut out = Vec::new();
    for (protocol, scen) in group_by(
        r.scenarios
            .iter()
            .filter(|s| !s.wording.protocol.is_empty())
            .map(|s| (s.wording.protocol.clone(), s.scenario.clone())),
    ) {
        out.push(format!("{}: {protocol}", scen.join(", ")));
    }
    let repeat: Vec<&str> = r
        .scenarios
        .iter()
        .filter(|s| s.measure_policy == MeasurePolicy::Repeat)
        .map(|s| s.scenario.as_str())
        .collect();
    if !repeat.is_empty() && r.run.min_measure_s > 0.0 {
        out.push(format!(
            "Measurement: trainings of {} are repeated inside one window of >= {} s and \
             reported per training; every other training is measured once.",
            repeat.join(", "),
            r.run.min_measure_s
        ));
    }
    for s in &r.run.skipped {
        out.push(format!("Skipped {}: {}.", s.scenario, s.reason));
    }
    out.push(carbon_note(r));
    if let Some(sw) = &r.sweep {
        out.push(format!(
            "Sweep: {} shard(s) on {} node(s) ({}); the tasks, each measured in {} mode, used \
             {:.3e} kWh and {:.3e} kg CO2e in all (each process counted once).",
            sw.shards.len(),
            sw.nodes.len(),
            sw.nodes
                .iter()
                .map(|n| format!("{}: {} task(s)", n.host, n.tasks))
                .collect::<Vec<_>>()
                .join(", "),
            sw.tracking_mode,
            sw.total.total_kwh,
            sw.total.co2_kg
        ));
    }
    out
}

/// The generated README section `name` (Markdown, without the markers); its regeneration
/// command names the section unless it is the default `demo`.
pub fn readme_section(r: &ResultsFile, command: &str, name: &str) -> String {
    let mut s = String::new();
    let flag = if name == "demo" {
        String::new()
    } else {
        format!(" --section {name}")
    };
    s.push_str(&format!(
        "Results of `{command}` (mode {}, seeds {:?}, {:.1} s wall time). Regenerate this section with \
         `cargo xtask readme{flag} --results PATH`.\n\n",
        r.run.mode, r.run.seeds, r.run.total_wall_s
    ));
    s.push_str(&headline_table(r).to_markdown());
    s.push('\n');
    for t in metric_tables(r) {
        s.push_str(&t.to_markdown());
        s.push('\n');
    }
    let conv = convergence_table(r);
    if !conv.rows.is_empty() {
        s.push_str(&conv.to_markdown());
        s.push('\n');
    }
    let impact = impact_table(r);
    if !impact.rows.is_empty() {
        s.push_str(&impact.to_markdown());
        s.push('\n');
    }
    let mut foot = footer(r);
    if let Some(carbon) = foot.pop() {
        s.push_str(&format!("*How CO2 was obtained:* {carbon}\n\n"));
    }
    for f in foot {
        s.push_str(&format!("{f}\n\n"));
    }
    s.push_str(
        "\"+source\" charges the whole cost of training the source model to this one task (worst \
         case); the plain reduction treats it as a shared, already-paid cost. Per-method numbers: \
         `cargo xtask demo`; schema: `docs/results-schema.md`.\n",
    );
    s
}

/// Marker that opens the generated README section.
pub const README_BEGIN: &str = "<!-- BEGIN DEMO RESULTS -->";
/// Marker that closes the generated README section.
pub const README_END: &str = "<!-- END DEMO RESULTS -->";

/// The marker pair of the README section called `name` (upper-cased): `DEMO` is
/// [`README_BEGIN`] / [`README_END`]; e.g. `transformer` gives `<!-- BEGIN TRANSFORMER RESULTS -->`
/// and `<!-- END TRANSFORMER RESULTS -->`. Each section is regenerated from its own results file.
pub fn readme_markers(name: &str) -> (String, String) {
    let n = name.to_uppercase();
    (
        format!("<!-- BEGIN {n} RESULTS -->"),
        format!("<!-- END {n} RESULTS -->"),
    )
}

/// Replaces the text between [`README_BEGIN`] and [`README_END`] in `readme` by `section`,
/// leaving everything else byte-for-byte unchanged.
///
/// # Errors
/// [`BenchError::ReadmeMarkers`] if a marker is missing, repeated or out of order.
pub fn splice_readme(readme: &str, section: &str) -> Result<String> {
    splice_readme_section(readme, "demo", section)
}

/// Replaces the text between the markers of section `name` ([`readme_markers`]) in `readme` by
/// `section`, leaving everything else byte-for-byte unchanged.
///
/// # Errors
/// [`BenchError::ReadmeMarkers`] if a marker is missing, repeated or out of order.
pub fn splice_readme_section(readme: &str, name: &str, section: &str) -> Result<String> {
    let (begin, end) = readme_markers(name);
    let count = |m: &str| readme.matches(m).count();
    if count(&begin) != 1 || count(&end) != 1 {
        return Err(BenchError::ReadmeMarkers(format!(
            "expected exactly one {begin} and one {end}"
        )));
    }
    let b = readme.find(&begin).unwrap_or(0) + begin.len();
    let e = readme.find(&end).unwrap_or(0);
    if e < b {
        return Err(BenchError::ReadmeMarkers(format!(
            "{end} comes before {begin}"
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
        // Named sections are independent of each other.
        assert_eq!(
            readme_markers("demo"),
            (README_BEGIN.into(), README_END.into())
        );
        let (b, e) = readme_markers("transformer");
        let two = format!("{out}{b}\nold\n{e}\n");
        let spliced = splice_readme_section(&two, "transformer", "dl").unwrap();
        assert_eq!(spliced, format!("{out}{b}\ndl\n{e}\n"));
        assert_eq!(splice_readme(&spliced, "new table").unwrap(), spliced);
    }

    #[test]
    fn wide_metric_tables_are_split_to_the_terminal_width() {
        let headers: Vec<String> = ["Strategy", "Quality"]
            .into_iter()
            .map(String::from)
            .chain((0..12).map(|i| format!("cka_layer_{i}")))
            .collect();
        let rows = vec![(0..14).map(|i| format!("{i}.000")).collect::<Vec<_>>(); 3];
        let tables = split_to_width("t".into(), headers.clone(), rows.clone(), 2);
        assert!(tables.len() >= 2);
        let mut seen = 0;
        for (k, t) in tables.iter().enumerate() {
            assert_eq!(&t.headers[..2], &headers[..2]);
            seen += t.headers.len() - 2;
            for line in t.to_text().lines() {
                assert!(line.chars().count() <= TERMINAL_WIDTH, "{line}");
            }
            assert_eq!(t.title.contains("continued"), k > 0);
        }
        assert_eq!(seen, 12, "every column kept once");
        // A narrow table is returned as is.
        let one = split_to_width("t".into(), headers[..4].to_vec(), rows, 2);
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].headers.len(), 4);
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
            ..Default::default()
        };
        assert_eq!(t.to_text(), "T\na    bb\n-------\nxyz   1\n");
    }

    #[test]
    fn wrap_breaks_at_the_width_and_indents() {
        let w = wrap("aaa bbb ccc ddd", 7, 2);
        assert_eq!(w, "aaa bbb\n  ccc\n  ddd");
        assert!(wrap(&"word ".repeat(100), 100, 2)
            .lines()
            .all(|l| l.chars().count() <= 100));
        assert_eq!(wrap("short", 100, 2), "short");
    }

    #[test]
    fn compact_numbers() {
        assert_eq!(count(12.0), "12");
        assert_eq!(count(66_955_010.0), "66.96M");
        assert_eq!(duration(0.0123), "12.3 ms");
        assert_eq!(duration(300.0), "5.0 min");
    }
}
