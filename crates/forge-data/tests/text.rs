//! Text loaders: formats, label encodings and typed errors on small temp files; the real
//! files only when FORGE_TEXT_DATA_DIR is set (they are never committed).

use forge_data::*;
use std::path::Path;

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn sst2_ag_news_rotten_formats() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "sst2/dev.tsv",
        "sentence\tlabel\nit 's \"great\" . \t1\nbleak \t0\n",
    );
    let s = sst2(d.path(), TextSplit::Eval).unwrap();
    assert_eq!(s.texts, ["it 's \"great\" .", "bleak"]);
    assert_eq!(s.labels, [1, 0]);
    assert_eq!(s.label_names, ["negative", "positive"]);
    write(
        d.path(),
        "ag_news/test.tsv",
        "text\tlabel\nStocks up\tBusiness\nA goal\tSports\nMars\tSci/Tech\n",
    );
    let a = ag_news(d.path(), TextSplit::Eval).unwrap();
    assert_eq!(a.labels, [2, 1, 3]);
    assert_eq!(a.n_classes(), 4);
    write(
        d.path(),
        "rotten_tomatoes.csv",
        "label,sentence\n1,\"Fresh, and fun.\"\n0,Dull.\n",
    );
    let r = rotten_tomatoes(d.path()).unwrap();
    assert_eq!(r.texts, ["Fresh, and fun.", "Dull."]);
    assert_eq!(r.labels, [1, 0]);
}

#[test]
fn text_errors_are_typed() {
    let d = tempfile::tempdir().unwrap();
    assert!(matches!(
        sst2(d.path(), TextSplit::Train),
        Err(DataError::MissingFile { .. })
    ));
    write(d.path(), "sst2/train.tsv", "");
    assert!(matches!(
        sst2(d.path(), TextSplit::Train),
        Err(DataError::EmptyFile { .. })
    ));
    write(d.path(), "sst2/train.tsv", "text\tlabel\nx\t1\n");
    assert!(matches!(
        sst2(d.path(), TextSplit::Train),
        Err(DataError::MissingColumn { .. })
    ));
    write(d.path(), "sst2/train.tsv", "sentence\tlabel\nx\t1\ny\t2\n");
    match sst2(d.path(), TextSplit::Train) {
        Err(DataError::BadCategory {
            line,
            column,
            value,
            ..
        }) => {
            assert_eq!((line, column.as_str(), value.as_str()), (3, "label", "2"));
        }
        other => panic!("{other:?}"),
    }
    write(d.path(), "sst2/train.tsv", "sentence\tlabel\nx\t1\textra\n");
    assert!(matches!(
        sst2(d.path(), TextSplit::Train),
        Err(DataError::ColumnCount { line: 2, .. })
    ));
    write(d.path(), "ag_news/train.tsv", "text\tlabel\nx\tWeather\n");
    assert!(matches!(
        ag_news(d.path(), TextSplit::Train),
        Err(DataError::BadCategory { .. })
    ));
}

#[test]
fn text_subsample_and_split() {
    let ds = TextDataset {
        name: "toy".into(),
        texts: (0..40).map(|i| format!("t{i}")).collect(),
        labels: (0..40).map(|i| usize::from(i % 4 == 0)).collect(),
        label_names: vec!["a".into(), "b".into()],
    };
    let s = ds.subsample(Budget::Count(8), 1).unwrap();
    assert_eq!(s.class_counts(), vec![6, 2]);
    assert_eq!(s, ds.subsample(Budget::Count(8), 1).unwrap());
    let (tr, te) = ds.train_test_split(0.25, 2).unwrap();
    assert_eq!((tr.len(), te.len()), (30, 10));
    assert!(tr.texts.iter().all(|t| !te.texts.contains(t)));
    assert!(ds.subsample(Budget::Count(41), 0).is_err());
}

#[test]
fn real_text_sets_when_available() {
    let Ok(dir) = text_data_dir() else {
        eprintln!("FORGE_TEXT_DATA_DIR not set: skipping the real text sets");
        return;
    };
    let dev = sst2(&dir, TextSplit::Eval).unwrap();
    assert_eq!(dev.len(), 872);
    let test = ag_news(&dir, TextSplit::Eval).unwrap();
    assert_eq!(test.class_counts(), vec![1_900; 4]);
    assert_eq!(rotten_tomatoes(&dir).unwrap().len(), 12_808);
}
