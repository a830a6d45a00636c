//! Shared helpers of forge-merge's integration tests: fixture paths, safetensors readers and
//! bit-level comparisons.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use forge_linalg::io::SafeTensorsFile;

/// `tests/fixtures` (tiny random checkpoints and mergekit's outputs).
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// `tests/corpus` (bad inputs).
pub fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// Every float tensor of a safetensors file (or checkpoint folder) as f32 values, by name.
pub fn read_all(path: &Path) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let files: Vec<PathBuf> = if path.is_dir() {
        let single = path.join("model.safetensors");
        if single.is_file() {
            vec![single]
        } else {
            let mut v: Vec<PathBuf> = std::fs::read_dir(path)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
                .collect();
            v.sort();
            v
        }
    } else {
        vec![path.to_path_buf()]
    };
    let mut out = BTreeMap::new();
    for f in files {
        let st = SafeTensorsFile::open(&f).unwrap();
        let names: Vec<String> = st.names().map(str::to_string).collect();
        for n in names {
            let t = st
                .tensor_as(&n, candle_core::DType::F32, &candle_core::Device::Cpu)
                .unwrap();
            let shape = t.dims().to_vec();
            out.insert(
                n,
                (shape, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()),
            );
        }
    }
    out
}

/// Distance in units in the last place between two finite f32 values.
pub fn ulps(a: f32, b: f32) -> u32 {
    let key = |x: f32| {
        let i = x.to_bits() as i32;
        if i < 0 {
            i32::MIN.wrapping_sub(i)
        } else {
            i
        }
    };
    key(a).wrapping_sub(key(b)).unsigned_abs()
}

/// (number of elements that differ in any bit, largest ulp distance) between two tensors.
pub fn compare(a: &[f32], b: &[f32]) -> (usize, u32) {
    assert_eq!(a.len(), b.len());
    let mut diff = 0;
    let mut worst = 0;
    for (&x, &y) in a.iter().zip(b) {
        if x.to_bits() != y.to_bits() {
            diff += 1;
            worst = worst.max(ulps(x, y));
        }
    }
    (diff, worst)
}

/// Names of files starting with forge-linalg's temporary prefix under `dir`.
pub fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(forge_linalg::io::TEMP_PREFIX))
                .collect()
        })
        .unwrap_or_default()
}
