//! The real shipped splits: row counts, encodings and source-only standardisation, checked
//! against counts computed independently with pandas (see the crate README).

use forge_data::*;

fn dir() -> std::path::PathBuf {
    // Tests find the data through CARGO_MANIFEST_DIR, not the environment.
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets")
}

fn sizes(s: &DomainSplit) -> (usize, usize) {
    (s.source.n_samples(), s.target.n_samples())
}

#[test]
fn california_housing_north_south() {
    let s = california_housing(&dir()).unwrap();
    // pandas: median Latitude 34.26; > median 10,251, <= median 10,389 (20,640 in all)
    assert_eq!(sizes(&s), (10_251, 10_389));
    assert_eq!(s.source.n_features(), 8);
    assert_eq!(s.source.task, Task::Regression);
    assert_eq!(s.source.target_name, "MedHouseVal");
    assert!(s
        .source
        .column("Latitude")
        .unwrap()
        .iter()
        .all(|&l| l > 34.26));
    assert!(s
        .target
        .column("Latitude")
        .unwrap()
        .iter()
        .all(|&l| l <= 34.26));
    // first row of the file (Berkeley, north): MedInc 8.3252, MedHouseVal 4.526
    assert_eq!(s.source.x_rows().unwrap()[0][0], 8.3252);
    assert_eq!(s.source.y_vec().unwrap()[0], 4.526);
}

#[test]
fn wine_red_to_white() {
    let s = wine_quality(&dir(), WineTask::Regression).unwrap();
    assert_eq!(sizes(&s), (1_599, 4_898));
    assert_eq!(s.source.n_features(), 11);
    // pandas: mean quality red 5.6360, white 5.8779
    let mean = |v: Vec<f64>| v.iter().sum::<f64>() / v.len() as f64;
    assert!((mean(s.source.y_vec().unwrap()) - 5.636_022_5).abs() < 1e-6);
    assert!((mean(s.target.y_vec().unwrap()) - 5.877_909_4).abs() < 1e-6);
    let g = wine_quality(&dir(), WineTask::GoodBinary).unwrap();
    assert_eq!(g.source.task, Task::Binary);
    // pandas: quality >= 7 in 217 red and 1,060 white wines
    assert_eq!(g.source.class_counts().unwrap(), vec![1_382, 217]);
    assert_eq!(g.target.class_counts().unwrap(), vec![3_838, 1_060]);
}

#[test]
fn titanic_by_port() {
    let s = titanic(&dir()).unwrap();
    assert_eq!(sizes(&s), (644, 245));
    assert_eq!(
        s.source.feature_names,
        ["Pclass", "Sex", "Age", "SibSp", "Parch", "Fare"]
    );
    // pandas: survival rate 0.33696 (S), 0.50204 (C+Q)
    assert_eq!(s.source.class_counts().unwrap()[1], 217);
    assert_eq!(s.target.class_counts().unwrap()[1], 123);
    // first passenger: 3rd class male, 22, 1 sibling, fare 7.25
    assert_eq!(
        s.source.x_rows().unwrap()[0],
        vec![3.0, 1.0, 22.0, 1.0, 0.0, 7.25]
    );
    // 90 (S) + 87 (C/Q) missing ages imputed with the S median 28.0 (plus 25 real 28-year-olds)
    let age_s = s.source.column("Age").unwrap();
    let age_t = s.target.column("Age").unwrap();
    assert_eq!(
        age_s.iter().chain(&age_t).filter(|&&a| a == 28.0).count(),
        90 + 87 + 25
    );
    assert!(s.description.contains("28"));
}

#[test]
fn breast_cancer_by_radius() {
    let s = breast_cancer(&dir()).unwrap();
    // pandas: median mean radius 13.37; <= 285, > 284
    assert_eq!(sizes(&s), (285, 284));
    assert_eq!(s.source.n_features(), 30);
    assert_eq!(s.source.feature_names[0], "mean radius");
    // 357 benign in all; benign share 0.9404 (small radius) vs 0.3134 (large)
    assert_eq!(s.source.class_counts().unwrap(), vec![17, 268]);
    assert_eq!(s.target.class_counts().unwrap(), vec![195, 89]);
}

#[test]
fn diabetes_by_age() {
    let s = diabetes(&dir()).unwrap();
    // numpy: median age 50; <= 227, > 215 (442 in all)
    assert_eq!(sizes(&s), (227, 215));
    assert_eq!(s.source.n_features(), 10);
    let mean = |v: Vec<f64>| v.iter().sum::<f64>() / v.len() as f64;
    assert!((mean(s.source.y_vec().unwrap()) - 137.378_854_6).abs() < 1e-6);
    assert!((mean(s.target.y_vec().unwrap()) - 167.711_627_9).abs() < 1e-6);
}

#[test]
fn standardisation_is_fitted_on_source_only() {
    for s in all_splits(&dir()).unwrap() {
        let z = s.standardized().unwrap();
        let src = z.source.x_rows().unwrap();
        let n = src.len() as f64;
        for j in 0..z.source.n_features() {
            let m = src.iter().map(|r| r[j]).sum::<f64>() / n;
            let sd = (src.iter().map(|r| (r[j] - m).powi(2)).sum::<f64>() / n).sqrt();
            assert!(m.abs() < 1e-9, "{} col {j}: mean {m}", s.name);
            assert!((sd - 1.0).abs() < 1e-9, "{} col {j}: std {sd}", s.name);
        }
        // The target is mapped with the source statistics, not its own: its first column
        // equals (x - mean_src) / std_src computed here by hand.
        let raw_s: Vec<f64> = s.source.x_rows().unwrap().iter().map(|r| r[0]).collect();
        let ms = raw_s.iter().sum::<f64>() / raw_s.len() as f64;
        let ss = (raw_s.iter().map(|v| (v - ms).powi(2)).sum::<f64>() / raw_s.len() as f64).sqrt();
        let raw_t = s.target.x_rows().unwrap()[0][0];
        let zt = z.target.x_rows().unwrap()[0][0];
        assert!((zt - (raw_t - ms) / ss).abs() < 1e-9, "{}", s.name);
        assert_eq!(z.target.y_vec().unwrap(), s.target.y_vec().unwrap());
    }
}

#[test]
fn shifted_splits_have_nonzero_target_mean_after_standardising() {
    // housing: south latitudes all lie below the northern source range
    let z = california_housing(&dir()).unwrap().standardized().unwrap();
    let lat = z.target.column("Latitude").unwrap();
    assert!(lat.iter().all(|&v| v < 0.0));
}

#[test]
fn load_split_by_name() {
    for name in SPLIT_NAMES {
        assert_eq!(load_split(name, &dir()).unwrap().name, name);
    }
    assert!(matches!(
        load_split("nope", &dir()),
        Err(DataError::UnknownSplit(_))
    ));
}

#[test]
fn generic_csv_loader_reads_real_file() {
    let ds = load_csv(&dir().join("winequality-red.csv"), "quality", &[]).unwrap();
    assert_eq!((ds.n_samples(), ds.n_features()), (1_599, 11));
    let ds = load_csv(
        &dir().join("california_housing.csv"),
        "MedHouseVal",
        &["MedInc", "HouseAge"],
    )
    .unwrap();
    assert_eq!(ds.feature_names, ["MedInc", "HouseAge"]);
    assert_eq!(ds.x_rows().unwrap()[0], vec![8.3252, 41.0]);
}
