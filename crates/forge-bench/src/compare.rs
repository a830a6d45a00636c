//! Comparing two results files in every field except timing and energy: what "a sharded run
//! equals a single run" means ([`check_equal`], used by `cargo xtask aggregate --check-equal`).

use crate::error::{BenchError, Result};
use crate::schema::{MachineInfo, Measurement, ResultsFile};
use std::collections::BTreeSet;

/// `r` with every timing- and energy-derived field zeroed and the provenance that says where
/// and when it ran removed (`created_unix_s`, `machine`, the carbon note, `sweep`): what must be
/// equal between two runs of the same plan by the same code. Kept: qualities, metrics, steps,
/// epochs, configurations, notes, curves, gate decisions, carbon intensity, PUE and methods.
pub fn comparable(r: &ResultsFile) -> ResultsFile {
    fn strip(m: &mut Measurement) {
        *m = Measurement {
            energy_method: std::mem::take(&mut m.energy_method),
            ..Default::default()
        };
    }
    let mut r = r.clone();
    r.created_unix_s = 0;
    r.run.total_wall_s = 0.0;
    r.machine = MachineInfo::default();
    r.carbon.note.clear();
    r.sweep = None;
    for x in &mut r.records {
        strip(&mut x.training);
        x.co2_kg_with_source = 0.0;
        x.co2_reduction_pct = 0.0;
        x.co2_reduction_with_source_pct = 0.0;
    }
    for c in &mut r.source_costs {
        strip(&mut c.training);
    }
    for a in &mut r.aggregates {
        for m in [
            &mut a.wall_time_s,
            &mut a.energy_kwh,
            &mut a.co2_kg,
            &mut a.co2_kg_with_source,
            &mut a.co2_reduction_pct,
            &mut a.co2_reduction_with_source_pct,
        ] {
            *m = Default::default();
        }
    }
    for s in &mut r.scenarios {
        for m in [
            &mut s.baseline_co2_kg,
            &mut s.transfer_co2_kg,
            &mut s.co2_reduction_pct,
            &mut s.co2_reduction_with_source_pct,
        ] {
            *m = Default::default();
        }
    }
    r
}

/// The fields in which `a` and `b` differ after [`comparable`], as `path: left != right`, at
/// most `max` of them (and the total count). Numbers within `rel_tol` (relative) are equal.
pub fn differences(
    a: &ResultsFile,
    b: &ResultsFile,
    rel_tol: f64,
    max: usize,
) -> (usize, Vec<String>) {
    let to_value = |r: &ResultsFile| serde_json::to_value(comparable(r)).unwrap_or_default();
    let (va, vb) = (to_value(a), to_value(b));
    let mut out = Vec::new();
    let mut count = 0;
    diff_values("", &va, &vb, rel_tol, max, &mut count, &mut out);
    (count, out)
}

fn diff_values(
    path: &str,
    a: &serde_json::Value,
    b: &serde_json::Value,
    tol: f64,
    max: usize,
    count: &mut usize,
    out: &mut Vec<String>,
) {
    use serde_json::Value;
    fn push(count: &mut usize, out: &mut Vec<String>, max: usize, what: String) {
        *count += 1;
        if out.len() < max {
            out.push(what);
        }
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => diff_values(&p, u, v, tol, max, count, out),
                    (u, v) => push(count, out, max, format!("{p}: {u:?} != {v:?}")),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                push(
                    count,
                    out,
                    max,
                    format!("{path}: {} items != {} items", x.len(), y.len()),
                );
                return;
            }
            for (i, (u, v)) in x.iter().zip(y).enumerate() {
                diff_values(&format!("{path}[{i}]"), u, v, tol, max, count, out);
            }
        }
        (Value::Number(x), Value::Number(y)) => {
            let (u, v) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            let equal = x == y || (u - v).abs() <= tol * u.abs().max(v.abs());
            if !equal {
                push(count, out, max, format!("{path}: {x} != {y}"));
            }
        }
        (u, v) => {
            if u != v {
                push(count, out, max, format!("{path}: {u} != {v}"));
            }
        }
    }
}

/// How many differences [`check_equal`] lists.
pub const MAX_LISTED_DIFFERENCES: usize = 20;

/// Checks that `a` and `b` are equal in every field except timing and energy ([`comparable`]),
/// numbers within `rel_tol` (relative; 0 = exactly equal).
///
/// # Errors
/// [`BenchError::ResultsDiffer`] listing the first [`MAX_LISTED_DIFFERENCES`] differences.
pub fn check_equal(a: &ResultsFile, b: &ResultsFile, rel_tol: f64) -> Result<()> {
    let (count, diffs) = differences(a, b, rel_tol, MAX_LISTED_DIFFERENCES);
    if count == 0 {
        Ok(())
    } else {
        Err(BenchError::ResultsDiffer {
            count,
            differences: diffs.join("\n"),
        })
    }
}
