//! Structure-aware fuzzing of forge-data's file parsers on stable Rust: a seeded generator writes
//! CSV / TSV / whitespace files (plain, gzip, truncated or bit-flipped gzip) built from the
//! pieces that break parsers (duplicate and empty names, ragged rows, quotes, NaN, 1e308, text,
//! invalid UTF-8, stray bytes), loads them and checks the properties every input must meet:
//! no panic; on success the shapes agree and every value is finite; on failure the message names
//! the file (or, for a feature error, the data set and the feature).
//!
//! Each target runs for `FORGE_FUZZ_SECS` seconds (default 1, for CI); e.g.
//! `FORGE_FUZZ_SECS=600 FORGE_FUZZ_SEED=7 cargo test -p forge-data --release --test fuzz -- --nocapture`
//! runs each target for ten minutes and reports the number of executions on stderr.

use flate2::write::GzEncoder;
use forge_data::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, Instant};

fn budget() -> Duration {
    let secs = std::env::var("FORGE_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(1.0);
    Duration::from_secs_f64(secs)
}

fn base_seed() -> u64 {
    std::env::var("FORGE_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED)
}

const NAMES: [&str; 8] = ["a", "b", "y", "", " a", "sentence", "label", "a\"b"];

fn cell(rng: &mut StdRng) -> Vec<u8> {
    let s: String = match rng.random_range(0..16) {
        0..=5 => format!("{}", rng.random_range(-1000.0..1000.0f64)),
        6 => format!("{}", rng.random_range(-5..5i32)),
        7 => [
            "NaN", "inf", "-inf", "1e400", "-1e308", "1e308", "1e-320", "0x10",
        ][rng.random_range(0..8)]
        .to_string(),
        8 => String::new(),
        9 => [
            "oops",
            "1,5",
            "\"1\"",
            "\"a\"\"b\"",
            " 3 ",
            "1e",
            "--1",
            "+4",
        ][rng.random_range(0..8)]
        .to_string(),
        10 => format!("{:e}", 10f64.powi(rng.random_range(-320..320))),
        11 => ["0", "1", "positive", "World", "Sci/Tech"][rng.random_range(0..5)].to_string(),
        12 => {
            let mut b = vec![0u8; rng.random_range(1..4)];
            rng.fill(&mut b[..]);
            return b;
        }
        13 => "\"unterminated".to_string(),
        14 => "é漢字🙂".to_string(),
        _ => format!("{}", rng.random_range(0..100u32)),
    };
    s.into_bytes()
}

/// A random delimited text file built from [`NAMES`] and [`cell`]s.
fn table(rng: &mut StdRng, sep: u8) -> Vec<u8> {
    let mut out = Vec::new();
    let width = rng.random_range(1..5);
    if rng.random_bool(0.9) {
        let mut names: Vec<&str> = (0..width)
            .map(|_| NAMES[rng.random_range(0..NAMES.len())])
            .collect();
        if rng.random_bool(0.5) {
            // mostly well-formed headers with a target column
            names = ["a", "b", "c", "d"][..width].to_vec();
            let t = rng.random_range(0..width);
            names[t] = "y";
        }
        out.extend(names.join(&(sep as char).to_string()).bytes());
        out.push(b'\n');
    }
    for _ in 0..rng.random_range(0..30) {
        let w = if rng.random_bool(0.9) {
            width
        } else {
            rng.random_range(0..6)
        };
        for j in 0..w {
            if j > 0 {
                out.push(sep);
            }
            if rng.random_bool(0.8) {
                out.extend(format!("{}", rng.random_range(-50.0..50.0f64)).bytes());
            } else {
                out.extend(cell(rng));
            }
        }
        out.extend(if rng.random_bool(0.1) {
            &b"\r\n"[..]
        } else {
            &b"\n"[..]
        });
        if rng.random_bool(0.03) {
            out.push(b'\n');
        }
    }
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Optionally compresses, truncates or corrupts `data`; returns the bytes and the file suffix.
fn wrap(rng: &mut StdRng, data: Vec<u8>) -> (Vec<u8>, bool) {
    if !rng.random_bool(0.4) {
        return (data, false);
    }
    let mut z = gzip(&data);
    match rng.random_range(0..4) {
        0 => z.truncate(rng.random_range(0..=z.len())),
        1 => {
            let i = rng.random_range(0..z.len());
            z[i] ^= 1 << rng.random_range(0..8);
        }
        _ => {}
    }
    (z, true)
}

/// Checks a loader's outcome: a data set must be finite and consistent; an error must name the
/// file (or the feature).
fn check_outcome(r: Result<TabularDataset>, path: &Path) -> Option<TabularDataset> {
    match r {
        Ok(ds) => {
            let (n, d) = (ds.n_samples(), ds.n_features());
            assert!(n >= 1 && d >= 1 && ds.feature_names.len() == d);
            assert!(!ds.feature_names.contains(&ds.target_name), "target leaked");
            let x = ds.x_rows().unwrap();
            assert!(x.iter().flatten().all(|v| v.is_finite()));
            assert!(ds.y_vec().unwrap().iter().all(|v| v.is_finite()));
            Some(ds)
        }
        Err(e) => {
            let msg = e.to_string();
            let file = path.file_name().unwrap().to_string_lossy();
            assert!(msg.contains(&*file), "error does not name {file}: {msg}");
            None
        }
    }
}

/// Runs `case` with fresh seeds until the budget is spent; returns the number of executions.
fn run(target: &str, mut case: impl FnMut(&mut StdRng, &Path)) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let budget = budget();
    let seed0 = base_seed();
    let mut n = 0u64;
    while n == 0 || start.elapsed() < budget {
        let seed = seed0.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(n);
        let mut rng = StdRng::seed_from_u64(seed);
        let r = catch_unwind(AssertUnwindSafe(|| case(&mut rng, dir.path())));
        if let Err(p) = r {
            let what = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{target}: input of seed {seed} (execution {n}) failed: {what}");
        }
        n += 1;
    }
    eprintln!(
        "fuzz {target}: {n} executions in {:.1} s, no failure",
        start.elapsed().as_secs_f64()
    );
    n
}

#[test]
fn fuzz_load_csv() {
    let n = run("load_csv", |rng, dir| {
        let t = table(rng, b',');
        let (bytes, gz) = wrap(rng, t);
        let path = dir.join(if gz { "f.csv.gz" } else { "f.csv" });
        std::fs::write(&path, &bytes).unwrap();
        let feats: Vec<&str> = match rng.random_range(0..4) {
            0 => vec!["a"],
            1 => vec!["a", "b"],
            2 => vec!["a", "y"],
            _ => vec![],
        };
        let target = if rng.random_bool(0.9) { "y" } else { "a" };
        let ds = check_outcome(load_csv(&path, target, &feats), &path);
        if let Some(ds) = ds {
            // Standardising a loaded set: finite values or a typed feature error.
            let split = DomainSplit {
                name: "fuzz".into(),
                description: String::new(),
                source: ds.clone(),
                target: ds,
            };
            match split.standardized() {
                Ok(s) => assert!(s
                    .source
                    .x_rows()
                    .unwrap()
                    .iter()
                    .flatten()
                    .all(|v| v.is_finite())),
                Err(DataError::BadFeature { .. }) => {}
                Err(e) => panic!("standardized: unexpected error {e:?}"),
            }
        }
    });
    assert!(n > 0);
}

#[test]
fn fuzz_whitespace_gzip_diabetes() {
    run("diabetes", |rng, dir| {
        let d = dir.join("diab");
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let mut body = table(rng, b' ');
        if rng.random_bool(0.5) {
            // a well-formed 10-column block to get past the layout checks
            body = (0..rng.random_range(1..20))
                .flat_map(|i| {
                    format!("{} 1 2 3 4 5 6 7 8 {}\n", 20 + i, rng.random_range(0..9)).into_bytes()
                })
                .collect();
        }
        let (x, gz) = wrap(rng, body);
        let x = if gz { x } else { gzip(&x) };
        std::fs::write(d.join("diabetes_data_raw.csv.gz"), x).unwrap();
        let t = table(rng, b' ');
        let (y, gz) = wrap(rng, t);
        let y = if gz { y } else { gzip(&y) };
        std::fs::write(d.join("diabetes_target.csv.gz"), y).unwrap();
        match diabetes(&d) {
            Ok(s) => assert!(s
                .source
                .x_rows()
                .unwrap()
                .iter()
                .flatten()
                .all(|v| v.is_finite())),
            Err(e) => {
                let msg = e.to_string();
                // Found by a 90 s run (seed 11): a valid file whose rows all fall on one side
                // of the age median gives an empty domain, named by split ("diabetes/target"),
                // not by file. Accepted here; see the report on issue 16.
                let empty_domain = matches!(&e, DataError::Empty(m) if m.contains("diabetes/"));
                assert!(
                    msg.contains("diabetes_") || empty_domain,
                    "error does not name the file: {msg}"
                );
            }
        }
    });
}

#[test]
fn fuzz_text_tsv() {
    run("sst2_tsv", |rng, dir| {
        let mut body = table(rng, b'\t');
        if rng.random_bool(0.5) {
            let mut h = b"sentence\tlabel\n".to_vec();
            h.extend(body);
            body = h;
        }
        let (bytes, gz) = wrap(rng, body);
        let path = dir.join(if gz { "t.tsv.gz" } else { "t.tsv" });
        std::fs::write(&path, &bytes).unwrap();
        match load_sst2_tsv(&path) {
            Ok(ds) => {
                assert_eq!(ds.texts.len(), ds.labels.len());
                assert!(ds.labels.iter().all(|&l| l < 2));
            }
            Err(e) => {
                let msg = e.to_string();
                let file = path.file_name().unwrap().to_string_lossy();
                assert!(msg.contains(&*file), "error does not name {file}: {msg}");
            }
        }
    });
}
