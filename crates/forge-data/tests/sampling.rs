//! Seeded train/test splits and few-shot subsampling: partitions, budgets, reproducibility,
//! stratification.

use candle_core::{Device, Tensor};
use forge_data::*;

/// 100 rows: x = row index, y = class (30 of class 1) or the index itself for regression.
fn toy(task: Task) -> TabularDataset {
    let n = 100;
    let x = Tensor::from_vec(
        (0..n).map(|i| i as f64).collect::<Vec<_>>(),
        (n, 1),
        &Device::Cpu,
    )
    .unwrap();
    let y: Vec<f64> = (0..n)
        .map(|i| match task {
            Task::Regression => i as f64,
            _ => f64::from(u8::from(i % 10 < 3)),
        })
        .collect();
    let y = Tensor::from_vec(y, n, &Device::Cpu).unwrap();
    TabularDataset::new("toy", x, y, vec!["i".into()], "y", task).unwrap()
}

fn ids(d: &TabularDataset) -> Vec<usize> {
    d.column("i").unwrap().iter().map(|&v| v as usize).collect()
}

#[test]
fn train_test_split_partitions_rows() {
    for task in [Task::Regression, Task::Binary] {
        let d = toy(task);
        let (tr, te) = d.train_test_split(0.25, 7).unwrap();
        assert_eq!((tr.n_samples(), te.n_samples()), (75, 25));
        let mut all = [ids(&tr), ids(&te)].concat();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>(), "no overlap, no row lost");
        // x and y stay aligned
        for (i, y) in ids(&te).iter().zip(te.y_vec().unwrap()) {
            assert_eq!(d.y_vec().unwrap()[*i], y);
        }
        let (tr2, _) = d.train_test_split(0.25, 7).unwrap();
        assert_eq!(ids(&tr), ids(&tr2), "same seed, same split");
        let (tr3, _) = d.train_test_split(0.25, 8).unwrap();
        assert_ne!(ids(&tr), ids(&tr3), "another seed, another split");
    }
    // stratified: 30% class 1 in both parts
    let (tr, te) = toy(Task::Binary).train_test_split(0.2, 1).unwrap();
    assert_eq!(te.class_counts().unwrap(), vec![14, 6]);
    assert_eq!(tr.class_counts().unwrap(), vec![56, 24]);
}

#[test]
fn bad_test_fraction_is_rejected() {
    let d = toy(Task::Regression);
    for f in [0.0, 1.0, -0.1, f64::NAN] {
        assert!(
            matches!(d.train_test_split(f, 0), Err(DataError::BadFraction { .. })),
            "{f}"
        );
    }
    let one = d.select(&[3]).unwrap();
    assert!(matches!(
        one.train_test_split(0.5, 0),
        Err(DataError::Empty(_))
    ));
}

#[test]
fn subsample_respects_budget_and_seed() {
    let d = toy(Task::Regression);
    let a = d.subsample(Budget::Fraction(0.1), 3).unwrap();
    assert_eq!(a.n_samples(), 10);
    assert_eq!(
        ids(&a),
        ids(&d.subsample(Budget::Fraction(0.1), 3).unwrap())
    );
    assert_ne!(
        ids(&a),
        ids(&d.subsample(Budget::Fraction(0.1), 4).unwrap())
    );
    let mut u = ids(&a);
    u.dedup();
    assert_eq!(u.len(), 10, "without replacement");
    assert_eq!(d.subsample(Budget::Count(17), 0).unwrap().n_samples(), 17);
    assert_eq!(
        d.subsample(Budget::Fraction(1.0), 0).unwrap().n_samples(),
        100
    );
    // a tiny fraction still keeps one row
    assert_eq!(
        d.subsample(Budget::Fraction(0.001), 0).unwrap().n_samples(),
        1
    );
}

#[test]
fn subsample_is_stratified_for_classification() {
    let d = toy(Task::Binary);
    assert_eq!(
        d.subsample(Budget::Count(10), 5)
            .unwrap()
            .class_counts()
            .unwrap(),
        vec![7, 3]
    );
    // 2 rows of a 70/30 set still see both classes
    assert_eq!(
        d.subsample(Budget::Count(2), 5)
            .unwrap()
            .class_counts()
            .unwrap(),
        vec![1, 1]
    );
}

#[test]
fn bad_budgets_are_rejected() {
    let d = toy(Task::Regression);
    for f in [0.0, -0.5, 1.5, f64::NAN, f64::INFINITY] {
        assert!(
            matches!(
                d.subsample(Budget::Fraction(f), 0),
                Err(DataError::BadFraction { .. })
            ),
            "{f}"
        );
    }
    assert!(matches!(
        d.subsample(Budget::Count(0), 0),
        Err(DataError::BadCount { count: 0, n: 100 })
    ));
    assert!(matches!(
        d.subsample(Budget::Count(101), 0),
        Err(DataError::BadCount { count: 101, n: 100 })
    ));
}

#[test]
fn select_checks_indices() {
    let d = toy(Task::Regression);
    assert_eq!(ids(&d.select(&[5, 2, 5]).unwrap()), vec![5, 2, 5]);
    assert!(matches!(
        d.select(&[100]),
        Err(DataError::IndexOutOfRange { index: 100, n: 100 })
    ));
    assert!(matches!(d.select(&[]), Err(DataError::Empty(_))));
}

#[test]
fn constructor_rejects_bad_input() {
    let dev = Device::Cpu;
    let x = Tensor::new(&[[1.0f64], [f64::NAN]], &dev).unwrap();
    let y = Tensor::new(&[0.0f64, 1.0], &dev).unwrap();
    let names = vec!["a".to_string()];
    assert!(matches!(
        TabularDataset::new("t", x, y.clone(), names.clone(), "y", Task::Regression),
        Err(DataError::Linalg(_))
    ));
    let x = Tensor::new(&[[1.0f64], [2.0]], &dev).unwrap();
    let y3 = Tensor::new(&[0.0f64, 1.0, 1.0], &dev).unwrap();
    assert!(TabularDataset::new("t", x.clone(), y3, names.clone(), "y", Task::Regression).is_err());
    assert!(TabularDataset::new("t", x.clone(), y.clone(), vec![], "y", Task::Regression).is_err());
    let y2 = Tensor::new(&[0.0f64, 2.0], &dev).unwrap();
    assert!(matches!(
        TabularDataset::new("t", x.clone(), y2.clone(), names.clone(), "y", Task::Binary),
        Err(DataError::BadLabel { row: 1, .. })
    ));
    let ok = TabularDataset::new(
        "t",
        x.clone(),
        y2,
        names.clone(),
        "y",
        Task::Multiclass { n_classes: 3 },
    )
    .unwrap();
    assert_eq!(ok.class_counts().unwrap(), vec![1, 0, 1]);
    let reg = TabularDataset::new("t", x, y, names, "y", Task::Regression).unwrap();
    assert!(matches!(
        reg.labels(),
        Err(DataError::NotClassification { .. })
    ));
}

#[test]
fn few_shot_parts_are_disjoint() {
    let d = toy(Task::Regression);
    let split = DomainSplit {
        name: "toy".into(),
        description: String::new(),
        source: d.clone(),
        target: d,
    };
    let f = split.few_shot(0.5, Budget::Count(5), 9).unwrap();
    assert_eq!(
        (f.target_train.n_samples(), f.target_test.n_samples()),
        (5, 50)
    );
    let test = ids(&f.target_test);
    assert!(ids(&f.target_train).iter().all(|i| !test.contains(i)));
    assert_eq!(f.source.n_samples(), 100);
}
