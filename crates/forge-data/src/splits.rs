//! The five documented domain splits of the shipped tabular data sets (see the crate README for
//! the table of definitions, sizes and encodings).

use crate::table::{Header, Sep, Table};
use crate::{DataError, DomainSplit, Result, TabularDataset, Task};
use std::path::{Path, PathBuf};

/// The folder holding the shipped CSVs: `$FORGE_DATA_DIR` if set, else `<workspace>/datasets`
/// (resolved from this crate's `CARGO_MANIFEST_DIR` at compile time).
pub fn datasets_dir() -> PathBuf {
    match std::env::var_os("FORGE_DATA_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets"),
    }
}

/// The two wine-quality tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WineTask {
    /// Regression on the sensory `quality` score (0-10).
    Regression,
    /// Binary: `quality >= 7` ("good") is 1, else 0.
    GoodBinary,
}

/// Names of the splits accepted by [`load_split`].
pub const SPLIT_NAMES: [&str; 6] = [
    "california_housing",
    "wine_quality",
    "wine_quality_good",
    "titanic",
    "breast_cancer",
    "diabetes",
];

/// Loads a split by its name (one of [`SPLIT_NAMES`]).
///
/// # Errors
/// [`DataError::UnknownSplit`] for an unknown name; otherwise the loader's errors.
pub fn load_split(name: &str, dir: &Path) -> Result<DomainSplit> {
    match name {
        "california_housing" => california_housing(dir),
        "wine_quality" => wine_quality(dir, WineTask::Regression),
        "wine_quality_good" => wine_quality(dir, WineTask::GoodBinary),
        "titanic" => titanic(dir),
        "breast_cancer" => breast_cancer(dir),
        "diabetes" => diabetes(dir),
        other => Err(DataError::UnknownSplit(other.to_string())),
    }
}

/// Loads every split of [`SPLIT_NAMES`].
///
/// # Errors
/// The first loader error.
pub fn all_splits(dir: &Path) -> Result<Vec<DomainSplit>> {
    SPLIT_NAMES.iter().map(|n| load_split(n, dir)).collect()
}

/// Median with the mean of the two middle values for even counts (NumPy's definition).
pub(crate) fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let m = s.len();
    if m == 0 {
        f64::NAN
    } else if m % 2 == 1 {
        s[m / 2]
    } else {
        0.5 * (s[m / 2 - 1] + s[m / 2])
    }
}

/// Column names and task shared by both domains of a split.
struct Schema<'a> {
    features: &'a [String],
    target: &'a str,
    task: Task,
}

/// Builds the two domains from rows and a per-row domain flag (`true` = source).
fn make_split(
    name: &str,
    description: String,
    (rows, y): (Vec<Vec<f64>>, Vec<f64>),
    is_source: &[bool],
    schema: Schema<'_>,
) -> Result<DomainSplit> {
    let Schema {
        features: feature_names,
        target: target_name,
        task,
    } = schema;
    let mut parts: [(Vec<Vec<f64>>, Vec<f64>); 2] = Default::default();
    for ((r, t), &s) in rows.into_iter().zip(y).zip(is_source) {
        let p = &mut parts[usize::from(!s)];
        p.0.push(r);
        p.1.push(t);
    }
    let [(sx, sy), (tx, ty)] = parts;
    let ds = |part: &str, x: Vec<Vec<f64>>, y: Vec<f64>| {
        TabularDataset::from_rows(
            format!("{name}/{part}"),
            &x,
            y,
            feature_names.to_vec(),
            target_name,
            task,
        )
    };
    Ok(DomainSplit {
        name: name.to_string(),
        description,
        source: ds("source", sx, sy)?,
        target: ds("target", tx, ty)?,
    })
}

/// Reads the named numeric columns of a table into rows plus the numeric target.
fn numeric(t: &Table, features: &[String], target: &str) -> Result<(Vec<Vec<f64>>, Vec<f64>)> {
    let cols = features
        .iter()
        .map(|c| t.col(c))
        .collect::<Result<Vec<_>>>()?;
    let tc = t.col(target)?;
    let mut rows = Vec::with_capacity(t.n_rows());
    let mut y = Vec::with_capacity(t.n_rows());
    for r in 0..t.n_rows() {
        rows.push(
            cols.iter()
                .map(|&c| t.num(r, c))
                .collect::<Result<Vec<_>>>()?,
        );
        y.push(t.num(r, tc)?);
    }
    Ok((rows, y))
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// California housing (Pace & Barry 1997, "Sparse spatial autoregressions", Statistics &
/// Probability Letters 33; the scikit-learn version), `california_housing.csv`.
///
/// Source = block groups with `Latitude > median(Latitude)` (north; median 34.26 over all
/// 20,640 rows: 10,251 rows), target = `Latitude <= median` (south: 10,389 rows). Regression on
/// `MedHouseVal` (median house value in 100,000 USD). All 8 columns stay features, Latitude
/// included (its ranges are disjoint between the domains, which is part of the shift).
///
/// # Errors
/// File, column and cell errors of the loader (see [`DataError`]).
pub fn california_housing(dir: &Path) -> Result<DomainSplit> {
    let path = dir.join("california_housing.csv");
    let t = Table::read(&path, Sep::Comma, Header::Names)?;
    let features = strings(&[
        "MedInc",
        "HouseAge",
        "AveRooms",
        "AveBedrms",
        "Population",
        "AveOccup",
        "Latitude",
        "Longitude",
    ]);
    let (rows, y) = numeric(&t, &features, "MedHouseVal")?;
    let lat: Vec<f64> = rows.iter().map(|r| r[6]).collect();
    let med = median(&lat);
    let is_source: Vec<bool> = lat.iter().map(|&l| l > med).collect();
    let desc = format!(
        "California housing: source = Latitude > {med} (median; north), target = Latitude <= {med} \
         (south); regression on MedHouseVal; all 8 features kept, Latitude included"
    );
    make_split(
        "california_housing",
        desc,
        (rows, y),
        &is_source,
        Schema {
            features: &features,
            target: "MedHouseVal",
            task: Task::Regression,
        },
    )
}

/// Wine quality (Cortez et al. 2009, "Modeling wine preferences by data mining from
/// physicochemical properties", Decision Support Systems 47), `winequality-red.csv` (1,599
/// rows) as source and `winequality-white.csv` (4,898 rows) as target; the 11
/// physico-chemical columns are the features. [`WineTask::Regression`] predicts `quality`;
/// [`WineTask::GoodBinary`] predicts `quality >= 7` as 1 (target name `good`).
///
/// # Errors
/// File, column and cell errors of the loader (see [`DataError`]).
pub fn wine_quality(dir: &Path, task: WineTask) -> Result<DomainSplit> {
    let features = strings(&[
        "fixed acidity",
        "volatile acidity",
        "citric acid",
        "residual sugar",
        "chlorides",
        "free sulfur dioxide",
        "total sulfur dioxide",
        "density",
        "pH",
        "sulphates",
        "alcohol",
    ]);
    let (name, target_name, ftask) = match task {
        WineTask::Regression => ("wine_quality", "quality", Task::Regression),
        WineTask::GoodBinary => ("wine_quality_good", "good", Task::Binary),
    };
    let load = |file: &str, part: &str| -> Result<TabularDataset> {
        let t = Table::read(&dir.join(file), Sep::Comma, Header::Names)?;
        let (rows, mut y) = numeric(&t, &features, "quality")?;
        if task == WineTask::GoodBinary {
            for v in &mut y {
                *v = f64::from(u8::from(*v >= 7.0));
            }
        }
        TabularDataset::from_rows(
            format!("{name}/{part}"),
            &rows,
            y,
            features.clone(),
            target_name,
            ftask,
        )
    };
    let what = match task {
        WineTask::Regression => "regression on quality (0-10)",
        WineTask::GoodBinary => "binary good = (quality >= 7) as 1",
    };
    Ok(DomainSplit {
        name: name.to_string(),
        description: format!(
            "Wine quality: source = red (winequality-red.csv), target = white \
             (winequality-white.csv); 11 physico-chemical features; {what}"
        ),
        source: load("winequality-red.csv", "source")?,
        target: load("winequality-white.csv", "target")?,
    })
}

/// Titanic (Kaggle training set), `titanic.csv`. Source = `Embarked == "S"` (Southampton, 644
/// rows), target = `Embarked` in `{C, Q}` (Cherbourg + Queenstown, 245 rows); the 2 rows with no
/// port are dropped. Binary target `Survived`.
///
/// Features and encoding: `Pclass` (1, 2, 3 as a number), `Sex` (male = 1, female = 0), `Age`
/// in years (missing ages, 177 rows, are imputed with the median age of the SOURCE rows that
/// have one, 28.0, in both domains), `SibSp`, `Parch` (counts), `Fare` (raw price). Name,
/// Ticket, Cabin and PassengerId are not used.
///
/// # Errors
/// File, column and cell errors; [`DataError::BadCategory`] for a `Sex` other than
/// male/female or an `Embarked` other than S/C/Q/empty.
pub fn titanic(dir: &Path) -> Result<DomainSplit> {
    let path = dir.join("titanic.csv");
    let t = Table::read(&path, Sep::Comma, Header::Names)?;
    let features = strings(&["Pclass", "Sex", "Age", "SibSp", "Parch", "Fare"]);
    let c = |n: &str| t.col(n);
    let (c_surv, c_class, c_sex, c_age, c_sib, c_par, c_fare, c_emb) = (
        c("Survived")?,
        c("Pclass")?,
        c("Sex")?,
        c("Age")?,
        c("SibSp")?,
        c("Parch")?,
        c("Fare")?,
        c("Embarked")?,
    );
    let mut rows = Vec::new();
    let mut y = Vec::new();
    let mut is_source = Vec::new();
    for r in 0..t.n_rows() {
        let src = match t.cell(r, c_emb) {
            "S" => true,
            "C" | "Q" => false,
            "" => continue,
            _ => return Err(t.bad_category(r, c_emb, &["S", "C", "Q", ""])),
        };
        let sex = match t.cell(r, c_sex) {
            "male" => 1.0,
            "female" => 0.0,
            _ => return Err(t.bad_category(r, c_sex, &["male", "female"])),
        };
        let age = if t.cell(r, c_age).is_empty() {
            f64::NAN // imputed below, never left in the data
        } else {
            t.num(r, c_age)?
        };
        let surv = t.num(r, c_surv)?;
        if surv != 0.0 && surv != 1.0 {
            return Err(t.bad_category(r, c_surv, &["0", "1"]));
        }
        rows.push(vec![
            t.num(r, c_class)?,
            sex,
            age,
            t.num(r, c_sib)?,
            t.num(r, c_par)?,
            t.num(r, c_fare)?,
        ]);
        y.push(surv);
        is_source.push(src);
    }
    let src_ages: Vec<f64> = rows
        .iter()
        .zip(&is_source)
        .filter(|(r, &s)| s && !r[2].is_nan())
        .map(|(r, _)| r[2])
        .collect();
    if src_ages.is_empty() {
        return Err(DataError::BadLayout {
            path,
            reason: "no source (Embarked = S) row has an Age to impute from".into(),
        });
    }
    let age_med = median(&src_ages);
    let mut n_imputed = 0;
    for r in &mut rows {
        if r[2].is_nan() {
            r[2] = age_med;
            n_imputed += 1;
        }
    }
    tracing::debug!(
        n_imputed,
        age_med,
        "titanic: imputed missing Age with the source median"
    );
    let desc = format!(
        "Titanic: source = Embarked S, target = Embarked C or Q (2 rows without port dropped); \
         Survived; features Pclass (1-3), Sex (male=1, female=0), Age ({n_imputed} missing imputed \
         with the source median {age_med}), SibSp, Parch, Fare"
    );
    make_split(
        "titanic",
        desc,
        (rows, y),
        &is_source,
        Schema {
            features: &features,
            target: "Survived",
            task: Task::Binary,
        },
    )
}

/// The 30 Wisconsin Diagnostic Breast Cancer feature names in scikit-learn's order.
pub const BREAST_CANCER_FEATURES: [&str; 30] = [
    "mean radius",
    "mean texture",
    "mean perimeter",
    "mean area",
    "mean smoothness",
    "mean compactness",
    "mean concavity",
    "mean concave points",
    "mean symmetry",
    "mean fractal dimension",
    "radius error",
    "texture error",
    "perimeter error",
    "area error",
    "smoothness error",
    "compactness error",
    "concavity error",
    "concave points error",
    "symmetry error",
    "fractal dimension error",
    "worst radius",
    "worst texture",
    "worst perimeter",
    "worst area",
    "worst smoothness",
    "worst compactness",
    "worst concavity",
    "worst concave points",
    "worst symmetry",
    "worst fractal dimension",
];

/// Breast cancer Wisconsin diagnostic (Street, Wolberg & Mangasarian 1993, "Nuclear feature
/// extraction for breast tumor diagnosis"; scikit-learn's copy), `breast_cancer.csv`, whose
/// first line is scikit-learn's `n_samples,n_features,class names` header
/// (`569,30,malignant,benign`) followed by 30 feature columns and the target.
///
/// Source = `mean radius <= median` (13.37; 285 rows, smaller tumours), target = `mean radius >
/// median` (284 rows). Binary target `benign`: 1 = benign, 0 = malignant. All 30 features kept.
///
/// # Errors
/// File and cell errors; [`DataError::BadLayout`] if the header line is not
/// `n,d,name0,name1` or the row count differs from `n`; [`DataError::ColumnCount`] if a row
/// does not have `d + 1` fields.
pub fn breast_cancer(dir: &Path) -> Result<DomainSplit> {
    let path = dir.join("breast_cancer.csv");
    let mut t = Table::read(&path, Sep::Comma, Header::Preamble)?;
    let bad = |reason: String| DataError::BadLayout {
        path: path.clone(),
        reason,
    };
    let head = &t.preamble;
    let (n, d) = match (head.len(), head.first(), head.get(1)) {
        (4, Some(n), Some(d)) => match (n.trim().parse::<usize>(), d.trim().parse::<usize>()) {
            (Ok(n), Ok(d)) => (n, d),
            _ => {
                return Err(bad(format!(
                    "first line must be `n,d,malignant,benign`, got {head:?}"
                )))
            }
        },
        _ => {
            return Err(bad(format!(
                "first line must be `n,d,malignant,benign`, got {head:?}"
            )))
        }
    };
    if d != BREAST_CANCER_FEATURES.len() {
        return Err(bad(format!("header says {d} features, expected 30")));
    }
    if t.rows[0].len() != d + 1 {
        return Err(DataError::ColumnCount {
            path: path.clone(),
            line: t.lines[0],
            expected: d + 1,
            got: t.rows[0].len(),
        });
    }
    if t.n_rows() != n {
        return Err(bad(format!(
            "header says {n} rows, file has {}",
            t.n_rows()
        )));
    }
    t.headers = strings(&BREAST_CANCER_FEATURES);
    t.headers.push("benign".into());
    let mut rows = Vec::with_capacity(n);
    let mut y = Vec::with_capacity(n);
    for r in 0..t.n_rows() {
        rows.push((0..d).map(|c| t.num(r, c)).collect::<Result<Vec<_>>>()?);
        let label = t.num(r, d)?;
        if label != 0.0 && label != 1.0 {
            return Err(t.bad_category(r, d, &["0", "1"]));
        }
        y.push(label);
    }
    let radius: Vec<f64> = rows.iter().map(|r| r[0]).collect();
    let med = median(&radius);
    let is_source: Vec<bool> = radius.iter().map(|&v| v <= med).collect();
    let desc = format!(
        "Breast cancer: source = mean radius <= {med} (median), target = mean radius > {med}; \
         binary target benign (1 = benign, 0 = malignant); 30 features"
    );
    make_split(
        "breast_cancer",
        desc,
        (rows, y),
        &is_source,
        Schema {
            features: &strings(&BREAST_CANCER_FEATURES),
            target: "benign",
            task: Task::Binary,
        },
    )
}

/// Diabetes (Efron, Hastie, Johnstone & Tibshirani 2004, "Least angle regression", Annals of
/// Statistics 32), raw units: `diabetes_data_raw.csv.gz` (442 rows, space separated: age sex bmi
/// bp s1..s6) and `diabetes_target.csv.gz` (disease progression one year after baseline).
///
/// Split by age: source = `age <= median` (50 years; 227 younger patients), target = `age > 50`
/// (215 older patients), whose progression is higher on average (168 vs 137). All 10 features
/// kept in raw units (sex coded 1/2 as in the file). Regression on `progression`.
///
/// # Errors
/// File and cell errors; [`DataError::ColumnCount`] for a row without 10 fields (or a target
/// row without 1); [`DataError::BadLayout`] if the two files have different row counts.
pub fn diabetes(dir: &Path) -> Result<DomainSplit> {
    let features = strings(&[
        "age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6",
    ]);
    let xpath = dir.join("diabetes_data_raw.csv.gz");
    let ypath = dir.join("diabetes_target.csv.gz");
    let mut tx = Table::read(&xpath, Sep::Whitespace, Header::None)?;
    let mut ty = Table::read(&ypath, Sep::Whitespace, Header::None)?;
    for (t, want) in [(&tx, features.len()), (&ty, 1)] {
        if t.rows[0].len() != want {
            return Err(DataError::ColumnCount {
                path: t.path.clone(),
                line: t.lines[0],
                expected: want,
                got: t.rows[0].len(),
            });
        }
    }
    tx.headers = features.clone();
    ty.headers = strings(&["progression"]);
    if tx.n_rows() != ty.n_rows() {
        return Err(DataError::BadLayout {
            path: ypath,
            reason: format!("{} targets for {} feature rows", ty.n_rows(), tx.n_rows()),
        });
    }
    let mut rows = Vec::with_capacity(tx.n_rows());
    let mut y = Vec::with_capacity(tx.n_rows());
    for r in 0..tx.n_rows() {
        rows.push(
            (0..features.len())
                .map(|c| tx.num(r, c))
                .collect::<Result<Vec<_>>>()?,
        );
        y.push(ty.num(r, 0)?);
    }
    let age: Vec<f64> = rows.iter().map(|r| r[0]).collect();
    let med = median(&age);
    let is_source: Vec<bool> = age.iter().map(|&a| a <= med).collect();
    let desc = format!(
        "Diabetes: source = age <= {med} (median; younger), target = age > {med} (older); \
         regression on progression; 10 features in raw units (sex coded 1/2)"
    );
    make_split(
        "diabetes",
        desc,
        (rows, y),
        &is_source,
        Schema {
            features: &features,
            target: "progression",
            task: Task::Regression,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_matches_numpy_definition() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
