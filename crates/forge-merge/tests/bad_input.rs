//! Bad input (files in tests/corpus, made by its make_corpus.py): typed errors naming the
//! problem, and never a partial output file.

mod common;

use common::{corpus, fixtures};
use forge_linalg::LinalgError;
use forge_merge::{merge_files, MergeConfig, MergeError, MismatchPolicy, WriteOptions};
use std::path::Path;

fn ties_config(base: &str, other: &str) -> MergeConfig {
    MergeConfig::new(forge_merge::MergeMethod::Ties)
        .with_base(base)
        .with_model(other, 1.0, Some(0.5))
}

/// Run a merge that must fail; check that `out` stays empty and return the error.
fn must_fail(cfg: &MergeConfig, root: &Path) -> MergeError {
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("merged");
    let err = merge_files(cfg, root, &target, &WriteOptions::default()).unwrap_err();
    let left: Vec<_> = std::fs::read_dir(&target)
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "files left after a failed merge: {left:?}");
    err
}

#[test]
fn truncated_file_is_a_typed_error_naming_it() {
    let root = corpus();
    let cfg = ties_config(
        "truncated",
        &fixtures().join("models/ft1").display().to_string(),
    );
    match must_fail(&cfg, &root) {
        MergeError::Linalg(e @ LinalgError::Corrupt { .. }) => {
            let m = e.to_string();
            assert!(
                m.contains("truncated") && m.contains("model.safetensors"),
                "{m}"
            );
        }
        other => panic!("expected Corrupt, got {other}"),
    }
}

#[test]
fn corrupt_header_is_a_typed_error() {
    let cfg = ties_config(
        "corrupt_header",
        &fixtures().join("models/ft1").display().to_string(),
    );
    let e = must_fail(&cfg, &corpus());
    assert!(
        matches!(e, MergeError::Linalg(LinalgError::Corrupt { .. })),
        "{e}"
    );
}

#[test]
fn missing_tensor_is_named() {
    let cfg = ties_config(
        "missing_tensor",
        &fixtures().join("models/ft1").display().to_string(),
    );
    match must_fail(&cfg, &corpus()) {
        MergeError::MissingTensor { model, tensor } => {
            assert_eq!(tensor, "classifier.bias");
            assert_eq!(model, "missing_tensor");
        }
        other => panic!("expected MissingTensor, got {other}"),
    }
}

#[test]
fn mismatched_shapes_are_named_under_the_error_policy() {
    let cfg = ties_config("models/base", "models/head4");
    match must_fail(&cfg, &fixtures()) {
        MergeError::ShapeMismatch {
            tensor,
            model,
            got,
            expected,
            ..
        } => {
            assert!(tensor.starts_with("classifier."), "{tensor}");
            assert_eq!(model, "models/head4");
            assert_eq!(got[0], 4);
            assert_eq!(expected[0], 2);
        }
        other => panic!("expected ShapeMismatch, got {other}"),
    }
}

#[test]
fn nan_in_an_input_is_reported_not_written() {
    let cfg = ties_config(
        &fixtures().join("models/base").display().to_string(),
        "nan_model",
    );
    match must_fail(&cfg, &corpus()) {
        MergeError::NonFinite { tensor, .. } => {
            assert_eq!(tensor, "distilbert.transformer.layer.0.ffn.lin1.weight")
        }
        other => panic!("expected NonFinite, got {other}"),
    }
}

#[test]
fn bad_configs_are_typed_errors() {
    let read = |n: &str| MergeConfig::from_yaml_file(&corpus().join(n));
    assert!(matches!(
        read("unknown_method.yml"),
        Err(MergeError::UnknownMethod { .. })
    ));
    for f in [
        "density_out_of_range.yml",
        "density_zero.yml",
        "t_out_of_range.yml",
    ] {
        assert!(
            matches!(read(f), Err(MergeError::OutOfRange { .. })),
            "{f}: {:?}",
            read(f)
        );
    }
    match read("drop_rate_one.yml") {
        Err(e @ MergeError::OutOfRange { .. }) => {
            assert!(e.to_string().contains("drop rate"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    match read("unknown_key.yml") {
        Err(e @ MergeError::Config { .. }) => assert!(e.to_string().contains("normalise"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        read("not_yaml.yml"),
        Err(MergeError::Config { .. })
    ));
    assert!(matches!(read("absent.yml"), Err(MergeError::Io { .. })));
}

#[test]
fn unknown_model_names_are_reported() {
    let mut cfg = ties_config("models/base", "models/ft1");
    cfg.mismatch = MismatchPolicy::TakeFrom("models/nope".into());
    assert!(matches!(
        cfg.validate(),
        Err(MergeError::UnknownModel { .. })
    ));
    let cfg = ties_config("models/base", "models/absent");
    let e = must_fail(&cfg, &fixtures());
    assert!(matches!(e, MergeError::Io { .. }), "{e}");
}

#[test]
fn failed_merge_keeps_a_previous_output_intact() {
    let dir = fixtures();
    let out = tempfile::tempdir().unwrap();
    let good = ties_config("models/base", "models/ft1");
    merge_files(&good, &dir, out.path(), &WriteOptions::default()).unwrap();
    let before = std::fs::read(out.path().join("model.safetensors")).unwrap();
    let bad = ties_config(
        &dir.join("models/base").display().to_string(),
        &corpus().join("nan_model").display().to_string(),
    );
    assert!(merge_files(&bad, &dir, out.path(), &WriteOptions::default()).is_err());
    assert_eq!(
        std::fs::read(out.path().join("model.safetensors")).unwrap(),
        before
    );
    assert!(common::temp_files(out.path()).is_empty());
}
