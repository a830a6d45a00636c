//! File-based merges: backbone-only merges of models with different heads, sharded output,
//! output dtypes, and agreement between the file and in-memory paths.

mod common;

use candle_core::{DType, Device};
use common::{compare, fixtures, read_all, temp_files};
use forge_merge::files::{ModelFiles, INDEX_NAME};
use forge_merge::{
    merge_files, merge_state_dicts, MergeConfig, MergeMethod, MismatchPolicy, StateDict,
    TensorOutcome, TensorSource, WriteOptions,
};

fn backbone_config(policy: MismatchPolicy) -> MergeConfig {
    let mut c = MergeConfig::new(MergeMethod::Ties)
        .with_base("models/base")
        .with_model("models/ft1", 0.5, Some(0.6))
        .with_model("models/head4", 0.5, Some(0.6));
    c.mismatch = policy;
    c
}

#[test]
fn backbone_only_merge_takes_the_named_head_and_reports_every_tensor() {
    let dir = fixtures();
    let out = tempfile::tempdir().unwrap();
    let cfg = backbone_config(MismatchPolicy::TakeFrom("models/head4".into()));
    let report = merge_files(&cfg, &dir, out.path(), &WriteOptions::default()).unwrap();
    let (merged, kept, taken, skipped) = report.counts();
    assert_eq!((kept, taken, skipped), (0, 2, 0), "{report:?}");
    assert_eq!(merged + taken, report.tensors.len());
    for name in ["classifier.weight", "classifier.bias"] {
        match report.outcome(name).unwrap() {
            TensorOutcome::Taken { from, reason } => {
                assert_eq!(from, "models/head4");
                assert!(reason.contains("shape"), "{reason}");
            }
            o => panic!("{name}: {o:?}"),
        }
    }
    // The taken head is head4's, unchanged; the backbone is merged (differs from every input).
    let ours = read_all(out.path());
    let head4 = read_all(&dir.join("models/head4"));
    assert_eq!(ours["classifier.weight"], head4["classifier.weight"]);
    assert_eq!(ours["classifier.weight"].0, vec![4, 16]);
    let base = read_all(&dir.join("models/base"));
    let q = "distilbert.transformer.layer.0.attention.q_lin.weight";
    assert_ne!(ours[q].1, base[q].1);
    assert_ne!(ours[q].1, head4[q].1);

    // Skip: the head is left out and reported.
    let out2 = tempfile::tempdir().unwrap();
    let report = merge_files(
        &backbone_config(MismatchPolicy::Skip),
        &dir,
        out2.path(),
        &WriteOptions::default(),
    )
    .unwrap();
    assert_eq!(report.counts().3, 2);
    let skipped = read_all(out2.path());
    assert!(!skipped.contains_key("classifier.weight"));
    // The backbone is the same either way.
    assert_eq!(skipped[q], ours[q]);
}

#[test]
fn sharded_output_equals_the_single_file_and_reopens_through_its_index() {
    let dir = fixtures();
    let cfg = MergeConfig::from_yaml_file(&dir.join("configs/ties.yml")).unwrap();
    let single = tempfile::tempdir().unwrap();
    merge_files(&cfg, &dir, single.path(), &WriteOptions::default()).unwrap();
    let sharded = tempfile::tempdir().unwrap();
    let opts = WriteOptions {
        max_shard_bytes: 8_000,
        ..Default::default()
    };
    merge_files(&cfg, &dir, sharded.path(), &opts).unwrap();
    assert!(sharded.path().join(INDEX_NAME).is_file());
    assert!(!sharded.path().join("model.safetensors").exists());
    let shards = std::fs::read_dir(sharded.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("model-"))
        .count();
    assert!(shards > 2, "{shards} shards");
    assert!(temp_files(sharded.path()).is_empty());
    let m = ModelFiles::open(sharded.path()).unwrap();
    let a = read_all(single.path());
    assert_eq!(m.specs().len(), a.len());
    for (n, (_, v)) in &a {
        let w = m.read_f32(n).unwrap();
        assert_eq!(compare(v, &w).0, 0, "{n}");
    }
    // Merging again into the sharded folder without sharding removes the stale shards.
    merge_files(&cfg, &dir, sharded.path(), &WriteOptions::default()).unwrap();
    assert!(!sharded.path().join(INDEX_NAME).exists());
    assert_eq!(read_all(sharded.path()), a);
}

#[test]
fn output_dtypes_round_once_from_f32() {
    let dir = fixtures();
    let mut cfg = MergeConfig::from_yaml_file(&dir.join("configs/linear.yml")).unwrap();
    let f32_out = tempfile::tempdir().unwrap();
    merge_files(&cfg, &dir, f32_out.path(), &WriteOptions::default()).unwrap();
    let full = read_all(f32_out.path());
    for (dt, name) in [(DType::BF16, "bfloat16"), (DType::F16, "float16")] {
        cfg.dtype = Some(name.into());
        let out = tempfile::tempdir().unwrap();
        merge_files(&cfg, &dir, out.path(), &WriteOptions::default()).unwrap();
        let f =
            forge_linalg::io::SafeTensorsFile::open(out.path().join("model.safetensors")).unwrap();
        let want: safetensors::Dtype = dt.into();
        for spec in f.specs() {
            assert_eq!(spec.dtype, want);
            let t = f.tensor(&spec.name, &Device::Cpu).unwrap();
            let expect = candle_core::Tensor::new(full[&spec.name].1.as_slice(), &Device::Cpu)
                .unwrap()
                .to_dtype(dt)
                .unwrap();
            let got = t.flatten_all().unwrap();
            assert_eq!(
                got.to_dtype(DType::F32).unwrap().to_vec1::<f32>().unwrap(),
                expect
                    .to_dtype(DType::F32)
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap(),
                "{name} {}",
                spec.name
            );
        }
    }
}

#[test]
fn file_and_memory_paths_agree_and_bf16_inputs_are_read() {
    let dir = fixtures();
    let cfg = MergeConfig::from_yaml_file(&dir.join("configs/task_arithmetic.yml")).unwrap();
    let out = tempfile::tempdir().unwrap();
    merge_files(&cfg, &dir, out.path(), &WriteOptions::default()).unwrap();
    let from_files = read_all(out.path());
    let dev = Device::Cpu;
    let dicts: Vec<StateDict> = cfg
        .input_names()
        .iter()
        .map(|n| {
            let f = ModelFiles::open_as(&dir.join(n), n.clone()).unwrap();
            let ts = f
                .specs()
                .iter()
                .map(|s| {
                    let v = f.read_f32(&s.name).unwrap().into_owned();
                    (
                        s.name.clone(),
                        candle_core::Tensor::from_vec(v, s.shape.clone(), &dev).unwrap(),
                    )
                })
                .collect();
            StateDict::new(n.clone(), ts)
        })
        .collect();
    let (merged, report) = merge_state_dicts(&cfg, &dicts, &dev).unwrap();
    assert_eq!(report.counts().0, merged.len());
    for (n, t) in &merged {
        let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(compare(&from_files[n].1, &v).0, 0, "{n}");
    }
    // bf16 inputs: converted exactly to f32, merged, written in bf16 (the base's dtype).
    let bf: Vec<StateDict> = dicts
        .iter()
        .map(|d| {
            StateDict::new(
                d.label(),
                d.tensors()
                    .iter()
                    .map(|(n, t)| (n.clone(), t.to_dtype(DType::BF16).unwrap()))
                    .collect(),
            )
        })
        .collect();
    let mut cfg_native = cfg.clone();
    cfg_native.dtype = None;
    let (merged_bf, _) = merge_state_dicts(&cfg_native, &bf, &dev).unwrap();
    assert!(merged_bf.iter().all(|(_, t)| t.dtype() == DType::BF16));
}
