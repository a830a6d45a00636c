//! Every bad-file case gives a typed error naming the file, line, column and cell text.

use forge_data::*;
use std::io::Write;
use std::path::{Path, PathBuf};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn write_gz(dir: &Path, name: &str, text: &str) {
    let f = std::fs::File::create(dir.join(name)).unwrap();
    let mut e = flate2::write::GzEncoder::new(f, flate2::Compression::default());
    e.write_all(text.as_bytes()).unwrap();
    e.finish().unwrap();
}

#[test]
fn missing_file() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("nope.csv");
    match load_csv(&p, "y", &[]) {
        Err(DataError::MissingFile { path }) => assert_eq!(path, p),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        california_housing(d.path()),
        Err(DataError::MissingFile { .. })
    ));
    assert!(matches!(
        diabetes(d.path()),
        Err(DataError::MissingFile { .. })
    ));
}

#[test]
fn empty_file_and_header_only() {
    let d = tempfile::tempdir().unwrap();
    for text in ["", "\n\n", "a,y\n"] {
        let p = write(d.path(), "e.csv", text);
        match load_csv(&p, "y", &[]) {
            Err(DataError::EmptyFile { path }) => assert_eq!(path, p),
            other => panic!("{text:?}: {other:?}"),
        }
    }
}

#[test]
fn missing_column() {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "m.csv", "a,b\n1,2\n");
    match load_csv(&p, "y", &["a"]) {
        Err(e @ DataError::MissingColumn { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("m.csv") && msg.contains("\"y\""), "{msg}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(load_csv(&p, "b", &["zz"]), Err(DataError::MissingColumn { column, .. }) if column == "zz")
    );
}

#[test]
fn non_numeric_cell_names_line_and_column() {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "n.csv", "a,y\n1,2\n3,oops\n");
    match load_csv(&p, "y", &[]) {
        Err(DataError::NonNumeric {
            path,
            line,
            column,
            value,
        }) => {
            assert_eq!(
                (path, line, column.as_str(), value.as_str()),
                (p.clone(), 3, "y", "oops")
            );
        }
        other => panic!("{other:?}"),
    }
    // empty cells, NaN and infinities are not numbers either (no silent NaN)
    for (cell, line) in [("", 2), ("NaN", 2), ("inf", 2)] {
        let p = write(d.path(), "n.csv", &format!("a,y\n{cell},2\n"));
        assert!(
            matches!(load_csv(&p, "y", &[]), Err(DataError::NonNumeric { line: l, .. }) if l == line),
            "{cell:?}"
        );
    }
    let msg = load_csv(&p, "y", &[]).unwrap_err().to_string();
    assert!(msg.contains("n.csv:2") && msg.contains("\"a\""), "{msg}");
}

#[test]
fn wrong_column_count() {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "c.csv", "a,y\n1,2\n1,2,3\n");
    assert!(matches!(
        load_csv(&p, "y", &[]),
        Err(DataError::ColumnCount {
            line: 3,
            expected: 2,
            got: 3,
            ..
        })
    ));
}

#[test]
fn titanic_bad_category_and_imputation() {
    let d = tempfile::tempdir().unwrap();
    let head = "PassengerId,Survived,Pclass,Name,Sex,Age,SibSp,Parch,Ticket,Fare,Cabin,Embarked\n";
    let rows = "1,0,3,\"A, Mr. B\",male,20,0,0,T,7.0,,S\n\
                2,1,1,\"C, Mrs. D\",female,,0,0,T,70.0,,S\n\
                3,1,1,\"E, Mrs. F\",female,40,0,0,T,70.0,,S\n\
                4,0,3,\"G, Mr. H\",male,,0,0,T,8.0,,Q\n\
                5,1,2,\"I, Miss J\",female,5,0,1,T,9.0,,\n";
    write(d.path(), "titanic.csv", &format!("{head}{rows}"));
    let s = titanic(d.path()).unwrap();
    assert_eq!((s.source.n_samples(), s.target.n_samples()), (3, 1));
    // source median age of known ages (20, 40) = 30 fills both domains
    assert_eq!(s.source.column("Age").unwrap(), vec![20.0, 30.0, 40.0]);
    assert_eq!(s.target.column("Age").unwrap(), vec![30.0]);
    assert_eq!(s.source.column("Sex").unwrap(), vec![1.0, 0.0, 0.0]);
    write(
        d.path(),
        "titanic.csv",
        &format!("{head}{rows}6,0,3,\"K, L\",unknown,1,0,0,T,1.0,,S\n"),
    );
    match titanic(d.path()) {
        Err(DataError::BadCategory {
            line,
            column,
            value,
            ..
        }) => {
            assert_eq!(
                (line, column.as_str(), value.as_str()),
                (7, "Sex", "unknown")
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn breast_cancer_layout_checks() {
    let d = tempfile::tempdir().unwrap();
    // mean radius 1.0 in the first row, 2.0 in the second: one row per domain
    let rows = |l2: &str| {
        format!(
            "1.0,{}0\n2.0,{}{l2}\n",
            "1.5,".repeat(29),
            "1.5,".repeat(29)
        )
    };
    write(
        d.path(),
        "breast_cancer.csv",
        &format!("2,30,malignant,benign\n{}", rows("1")),
    );
    let s = breast_cancer(d.path()).unwrap();
    assert_eq!((s.source.n_samples(), s.target.n_samples()), (1, 1));
    assert_eq!(s.target.y_vec().unwrap(), vec![1.0]);
    write(
        d.path(),
        "breast_cancer.csv",
        &format!("3,30,malignant,benign\n{}", rows("1")),
    );
    assert!(matches!(
        breast_cancer(d.path()),
        Err(DataError::BadLayout { .. })
    ));
    write(
        d.path(),
        "breast_cancer.csv",
        &format!("bad header\n{}", rows("1")),
    );
    assert!(matches!(
        breast_cancer(d.path()),
        Err(DataError::BadLayout { .. })
    ));
    write(
        d.path(),
        "breast_cancer.csv",
        &format!("2,30,malignant,benign\n{}", rows("x")),
    );
    match breast_cancer(d.path()) {
        Err(DataError::NonNumeric {
            line,
            column,
            value,
            ..
        }) => {
            assert_eq!((line, column.as_str(), value.as_str()), (3, "benign", "x"));
        }
        other => panic!("{other:?}"),
    }
    write(
        d.path(),
        "breast_cancer.csv",
        "1,30,malignant,benign\n1,2\n",
    );
    assert!(matches!(
        breast_cancer(d.path()),
        Err(DataError::ColumnCount {
            expected: 31,
            got: 2,
            ..
        })
    ));
}

#[test]
fn diabetes_layout_checks() {
    let d = tempfile::tempdir().unwrap();
    write_gz(
        d.path(),
        "diabetes_data_raw.csv.gz",
        "59 2 32.1 101 157 93.2 38 4 4.8598 87\n48 1 21.6 87 183 103.2 70 3 3.8918 69\n",
    );
    write_gz(d.path(), "diabetes_target.csv.gz", "151\n75\n");
    let s = diabetes(d.path()).unwrap();
    assert_eq!((s.source.n_samples(), s.target.n_samples()), (1, 1));
    write_gz(d.path(), "diabetes_target.csv.gz", "151\n");
    assert!(matches!(
        diabetes(d.path()),
        Err(DataError::BadLayout { .. })
    ));
    write_gz(d.path(), "diabetes_target.csv.gz", "151\nabc\n");
    assert!(matches!(
        diabetes(d.path()),
        Err(DataError::NonNumeric { line: 2, ref column, .. }) if column == "progression"
    ));
    write_gz(d.path(), "diabetes_data_raw.csv.gz", "59 2 32.1\n");
    assert!(matches!(
        diabetes(d.path()),
        Err(DataError::ColumnCount {
            expected: 10,
            got: 3,
            ..
        })
    ));
}

#[test]
fn wine_non_numeric_names_column() {
    let d = tempfile::tempdir().unwrap();
    let head = "fixed acidity,volatile acidity,citric acid,residual sugar,chlorides,free sulfur dioxide,total sulfur dioxide,density,pH,sulphates,alcohol,quality\n";
    write(
        d.path(),
        "winequality-red.csv",
        &format!("{head}7.4,0.7,0,1.9,0.076,11,34,0.9978,3.51,0.56,9.4,5\n"),
    );
    write(
        d.path(),
        "winequality-white.csv",
        &format!("{head}7.4,0.7,0,1.9,0.076,11,34,0.9978,high,0.56,9.4,5\n"),
    );
    match wine_quality(d.path(), WineTask::GoodBinary) {
        Err(DataError::NonNumeric {
            path,
            line,
            column,
            value,
        }) => {
            assert!(path.ends_with("winequality-white.csv"));
            assert_eq!((line, column.as_str(), value.as_str()), (2, "pH", "high"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn malformed_csv_is_a_typed_error() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("u.csv");
    std::fs::write(&p, b"a,y\n1,\xff\xfe\n").unwrap();
    match load_csv(&p, "y", &[]) {
        Err(e @ DataError::Csv { .. }) => assert!(e.to_string().contains("u.csv"), "{e}"),
        other => panic!("{other:?}"),
    }
}

/// Issue 16: a duplicated header name silently read the first column twice; the target listed
/// as a feature was accepted (leakage).
#[test]
fn duplicate_header_and_target_leakage_are_errors() {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "dup.csv", "a,b,a,y\n1,2,3,4\n");
    match load_csv(&p, "y", &[]) {
        Err(e @ DataError::DuplicateColumn { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("dup.csv") && msg.contains("\"a\""), "{msg}");
            assert!(matches!(
                e,
                DataError::DuplicateColumn {
                    first: 1,
                    second: 3,
                    ..
                }
            ));
        }
        other => panic!("{other:?}"),
    }
    let p = write(d.path(), "leak.csv", "a,y\n1,2\n3,4\n");
    assert!(matches!(
        load_csv(&p, "y", &["a", "y"]),
        Err(DataError::TargetAsFeature { column, .. }) if column == "y"
    ));
    assert!(matches!(
        load_csv(&p, "y", &["a", "a"]),
        Err(DataError::RepeatedFeature { column, .. }) if column == "a"
    ));
}

/// Issue 16: gzip/UTF-8 errors and a data "folder" that is a file did not name the path.
#[test]
fn read_errors_name_the_file() {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "plain.csv.gz", "a,y\n1,2\n");
    match load_csv(&p, "y", &[]) {
        Err(e @ DataError::Read { .. }) => assert!(e.to_string().contains("plain.csv.gz"), "{e}"),
        other => panic!("{other:?}"),
    }
    // invalid UTF-8 inside a valid gzip stream, read line by line (diabetes' whitespace layout)
    let f = std::fs::File::create(d.path().join("diabetes_data_raw.csv.gz")).unwrap();
    let mut e = flate2::write::GzEncoder::new(f, flate2::Compression::default());
    e.write_all(b"59 2 \xff\xfe\n").unwrap();
    e.finish().unwrap();
    match diabetes(d.path()) {
        Err(e @ DataError::Read { .. }) => {
            assert!(e.to_string().contains("diabetes_data_raw.csv.gz"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    let file = write(d.path(), "datadir", "not a folder");
    match california_housing(&file) {
        Err(e @ DataError::NotAFolder { .. }) => assert!(e.to_string().contains("datadir"), "{e}"),
        other => panic!("{other:?}"),
    }
}
