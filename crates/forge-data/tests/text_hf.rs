//! Hugging Face parquet files (fixtures made by `tests/fixtures/hf/make_hf_parquet.py` in the
//! Hub's column layout) converted to Forge's TSV and loaded with the normal loaders.
#![cfg(feature = "parquet")]

use forge_data::text::{ag_news, sst2, TextSplit};
use forge_data::text_hf::{tsv_from_parquet, HfText};
use forge_data::DataError;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hf")
        .join(name)
}

#[test]
fn hub_parquet_becomes_the_tsv_layout_the_loaders_read() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let n = tsv_from_parquet(
        HfText::Sst2,
        &fixture("sst2-train.parquet"),
        &d.join("sst2/train.tsv"),
    )
    .unwrap();
    assert_eq!(n, 4);
    tsv_from_parquet(
        HfText::Sst2,
        &fixture("sst2-validation.parquet"),
        &d.join("sst2/dev.tsv"),
    )
    .unwrap();
    tsv_from_parquet(
        HfText::AgNews,
        &fixture("ag_news-train.parquet"),
        &d.join("ag_news/train.tsv"),
    )
    .unwrap();
    tsv_from_parquet(
        HfText::AgNews,
        &fixture("ag_news-test.parquet"),
        &d.join("ag_news/test.tsv"),
    )
    .unwrap();
    let train = sst2(d, TextSplit::Train).unwrap();
    assert_eq!(train.labels, [1, 0, 1, 0]);
    // A tab and a line break inside a sentence became spaces (one record, two fields).
    assert_eq!(train.texts[2], "the cast is wonderful");
    assert_eq!(train.texts[0], "a gripping , funny film");
    assert_eq!(sst2(d, TextSplit::Eval).unwrap().len(), 2);
    let ag = ag_news(d, TextSplit::Train).unwrap();
    assert_eq!(ag.labels, [0, 1, 2, 3]);
    assert_eq!(ag.texts[3], "New chip doubles speed");
    assert_eq!(ag_news(d, TextSplit::Eval).unwrap().labels, [0, 1]);
    for k in [HfText::Sst2, HfText::AgNews] {
        assert!(k.repo().contains('/') && k.files().iter().all(|(f, _)| f.ends_with(".parquet")));
    }
}

#[test]
fn bad_parquet_gives_typed_errors_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sst2/train.tsv");
    let e = tsv_from_parquet(HfText::Sst2, &fixture("bad-label.parquet"), &out).unwrap_err();
    assert!(matches!(e, DataError::BadLabel { .. }), "{e}");
    let e = tsv_from_parquet(HfText::Sst2, &fixture("bad-columns.parquet"), &out).unwrap_err();
    assert!(matches!(e, DataError::Parquet { .. }), "{e}");
    assert!(
        e.to_string().contains("sentence") && e.to_string().contains("review"),
        "{e}"
    );
    // Not parquet at all (the generator script), and a missing file.
    let e = tsv_from_parquet(HfText::Sst2, &fixture("make_hf_parquet.py"), &out).unwrap_err();
    assert!(matches!(e, DataError::Parquet { .. }), "{e}");
    let e = tsv_from_parquet(HfText::Sst2, &fixture("missing.parquet"), &out).unwrap_err();
    assert!(e.to_string().contains("missing.parquet"), "{e}");
    assert!(!out.exists());
}
