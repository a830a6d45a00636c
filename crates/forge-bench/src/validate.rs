//! Validation of a [`ResultsFile`] before it is written and after it is read: every number
//! finite and plausible, no empty section. JSON has no NaN or infinity (serde_json writes them
//! as `null`, which the reader then rejects without naming the field), and a value like 1.7e308
//! passes every floor of a gate, so both are refused here, naming the field.
//!
//! [`float_fields`] lists every floating-point field of a results file with its path (e.g.
//! `aggregates[3].co2_kg.mean`); [`validate`] checks them against the bounds below.

use crate::error::{BenchError, Result};
use crate::schema::{
    ConfigValue, MeanStd, Measurement, Metric, ResultsFile, READABLE_SCHEMA_VERSIONS,
};

/// No number in a results file may exceed this magnitude. Far beyond anything a run produces
/// (a year of a 10 kW machine is ~1e5 kWh; percentages are bounded by 100 below by a
/// baseline that costs more than 1e-13 of the transfer), and far below the 1e308 that marks a
/// corrupt or hostile file.
pub const MAX_ABS: f64 = 1e15;

/// Every floating-point field of `r`, with its path.
pub fn float_fields(r: &ResultsFile) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    let mut push = |p: String, v: f64| out.push((p, v));
    let ms = |push: &mut dyn FnMut(String, f64), p: &str, m: &MeanStd| {
        push(format!("{p}.mean"), m.mean);
        push(format!("{p}.std"), m.std);
    };
    let meas = |push: &mut dyn FnMut(String, f64), p: &str, m: &Measurement| {
        for (k, v) in [
            ("wall_time_s", m.wall_time_s),
            ("cpu_kwh", m.cpu_kwh),
            ("ram_kwh", m.ram_kwh),
            ("gpu_kwh", m.gpu_kwh),
            ("total_kwh", m.total_kwh),
            ("co2_kg", m.co2_kg),
        ] {
            push(format!("{p}.{k}"), v);
        }
    };
    push("run.min_measure_s".into(), r.run.min_measure_s);
    push("run.total_wall_s".into(), r.run.total_wall_s);
    push(
        "carbon.carbon_intensity_g_per_kwh".into(),
        r.carbon.carbon_intensity_g_per_kwh,
    );
    push("carbon.pue".into(), r.carbon.pue);
    for (i, x) in r.records.iter().enumerate() {
        let p = format!("records[{i}]");
        push(format!("{p}.quality"), x.quality);
        for (k, v) in &x.extra_metrics {
            push(format!("{p}.extra_metrics.{k}"), *v);
        }
        meas(&mut push, &format!("{p}.training"), &x.training);
        for (k, v) in [
            ("co2_kg_with_source", x.co2_kg_with_source),
            ("co2_reduction_pct", x.co2_reduction_pct),
            (
                "co2_reduction_with_source_pct",
                x.co2_reduction_with_source_pct,
            ),
            ("step_reduction_pct", x.step_reduction_pct),
            ("quality_delta", x.quality_delta),
        ] {
            push(format!("{p}.{k}"), v);
        }
        for (k, v) in &x.config {
            if let ConfigValue::Float(f) = v {
                push(format!("{p}.config.{k}"), *f);
            }
        }
    }
    for (i, a) in r.aggregates.iter().enumerate() {
        let p = format!("aggregates[{i}]");
        push(format!("{p}.trainable_params"), a.trainable_params);
        for (k, m) in [
            ("quality", &a.quality),
            ("quality_delta", &a.quality_delta),
            ("gradient_steps", &a.gradient_steps),
            ("wall_time_s", &a.wall_time_s),
            ("energy_kwh", &a.energy_kwh),
            ("co2_kg", &a.co2_kg),
            ("co2_kg_with_source", &a.co2_kg_with_source),
            ("co2_reduction_pct", &a.co2_reduction_pct),
            (
                "co2_reduction_with_source_pct",
                &a.co2_reduction_with_source_pct,
            ),
            ("step_reduction_pct", &a.step_reduction_pct),
        ] {
            ms(&mut push, &format!("{p}.{k}"), m);
        }
    }
    for (i, s) in r.scenarios.iter().enumerate() {
        let p = format!("scenarios[{i}]");
        for (k, m) in [
            ("baseline_co2_kg", &s.baseline_co2_kg),
            ("transfer_co2_kg", &s.transfer_co2_kg),
            ("co2_reduction_pct", &s.co2_reduction_pct),
            (
                "co2_reduction_with_source_pct",
                &s.co2_reduction_with_source_pct,
            ),
            ("baseline_quality", &s.baseline_quality),
            ("transfer_quality", &s.transfer_quality),
            ("quality_delta", &s.quality_delta),
        ] {
            ms(&mut push, &format!("{p}.{k}"), m);
        }
    }
    for (i, c) in r.source_costs.iter().enumerate() {
        meas(
            &mut push,
            &format!("source_costs[{i}].training"),
            &c.training,
        );
    }
    for (i, c) in r.convergence.iter().enumerate() {
        for (e, q) in c.quality.iter().enumerate() {
            push(format!("convergence[{i}].quality[{e}]"), *q);
        }
    }
    for (i, c) in r.convergence_summaries.iter().enumerate() {
        let p = format!("convergence_summaries[{i}]");
        push(format!("{p}.baseline_final"), c.baseline_final);
        push(format!("{p}.tolerance"), c.tolerance);
    }
    for (i, g) in r.gate.iter().enumerate() {
        for (j, s) in g.statistics.iter().enumerate() {
            let p = format!("gate[{i}].statistics[{j}]");
            push(format!("{p}.value"), s.value);
            if let Some(t) = s.threshold {
                push(format!("{p}.threshold"), t);
            }
        }
    }
    if let Some(sw) = &r.sweep {
        for (i, sh) in sw.shards.iter().enumerate() {
            let p = format!("sweep.shards[{i}]");
            push(format!("{p}.started_unix_s"), sh.started_unix_s);
            push(format!("{p}.finished_unix_s"), sh.finished_unix_s);
            if let Some(t) = &sh.task {
                meas(&mut push, &format!("{p}.task"), t);
            }
        }
        for (i, n) in sw.nodes.iter().enumerate() {
            meas(&mut push, &format!("sweep.nodes[{i}].total"), &n.total);
        }
        meas(&mut push, "sweep.total", &sw.total);
    }
    out
}

fn bad(field: impl Into<String>, reason: String) -> BenchError {
    BenchError::InvalidResults {
        path: None,
        field: field.into(),
        reason,
    }
}

/// Whether a field must not be negative (energies, CO2, times, counts, intensities).
fn non_negative(path: &str) -> bool {
    let leaf = path.rsplit('.').next().unwrap_or(path);
    let leaf = if leaf == "mean" || leaf == "std" {
        // `x.co2_kg.mean`: judge by the field, not by `mean`; a std is never negative.
        if leaf == "std" {
            return true;
        }
        path.rsplit('.').nth(1).unwrap_or(leaf)
    } else {
        leaf
    };
    leaf.ends_with("_kwh")
        || leaf.ends_with("_kg")
        || leaf.ends_with("_s")
        || leaf.starts_with("co2_kg")
        || leaf == "gradient_steps"
        || leaf == "trainable_params"
        || leaf == "carbon_intensity_g_per_kwh"
        || leaf == "tolerance"
}

/// Checks `r`: a supported schema version, at least one record, aggregate and scenario
/// summary, every number finite with magnitude at most [`MAX_ABS`], energies / CO2 / times /
/// counts non-negative, percentages at most 100, PUE at least 1, accuracies in `[0, 1]` and
/// R2 at most 1.
///
/// # Errors
/// [`BenchError::InvalidResults`] naming the first offending field (path `None`; readers add
/// the file).
pub fn validate(r: &ResultsFile) -> Result<()> {
    if !READABLE_SCHEMA_VERSIONS.contains(&r.schema_version) {
        return Err(bad(
            "schema_version",
            format!(
                "is {} (this build reads {READABLE_SCHEMA_VERSIONS:?})",
                r.schema_version
            ),
        ));
    }
    for (field, empty) in [
        ("records", r.records.is_empty()),
        ("aggregates", r.aggregates.is_empty()),
        ("scenarios", r.scenarios.is_empty()),
        ("run.scenarios", r.run.scenarios.is_empty()),
        ("run.seeds", r.run.seeds.is_empty()),
    ] {
        if empty {
            return Err(bad(field, "is empty: the run produced no results".into()));
        }
    }
    for (path, v) in float_fields(r) {
        if !v.is_finite() {
            return Err(bad(path, format!("is not finite ({v})")));
        }
        if v.abs() > MAX_ABS {
            return Err(bad(
                path,
                format!("= {v:e} is beyond any plausible value (|x| <= {MAX_ABS:e})"),
            ));
        }
        if v < 0.0 && non_negative(&path) {
            return Err(bad(path, format!("= {v} is negative")));
        }
        if path.ends_with("_pct") || path.contains("_pct.") {
            let is_std = path.ends_with(".std");
            if !is_std && v > 100.0 + 1e-9 {
                return Err(bad(path, format!("= {v} is a reduction above 100 %")));
            }
        }
    }
    if r.carbon.pue < 1.0 {
        return Err(bad(
            "carbon.pue",
            format!("= {} is below 1 (a PUE is >= 1)", r.carbon.pue),
        ));
    }
    let check_quality = |field: String, metric: Metric, q: f64| -> Result<()> {
        let ok = match metric {
            Metric::Accuracy => (0.0..=1.0).contains(&q),
            Metric::Cka => (-1e-9..=1.0 + 1e-9).contains(&q),
            Metric::R2 => q <= 1.0 + 1e-9,
        };
        if ok {
            Ok(())
        } else {
            Err(bad(
                field,
                format!("= {q} is not a possible {} value", metric.short()),
            ))
        }
    };
    for (i, x) in r.records.iter().enumerate() {
        check_quality(format!("records[{i}].quality"), x.metric, x.quality)?;
    }
    for (i, a) in r.aggregates.iter().enumerate() {
        check_quality(
            format!("aggregates[{i}].quality.mean"),
            a.metric,
            a.quality.mean,
        )?;
    }
    Ok(())
}
