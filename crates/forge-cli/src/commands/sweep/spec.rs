//! The sweep file of `forge sweep` and its expansion into work units.
//!
//! A sweep file (YAML, or JSON with a `.json` extension) holds the `forge finetune` arguments
//! shared by every unit and the axes; unknown fields are refused by name.
//!
//! | field | required | meaning |
//! |---|---|---|
//! | `train`, `val` | `train` | training / validation TSV (relative paths: to the sweep file's folder) |
//! | `max_length`, `max_rows`, `text_col`, `label_col` | no | as `forge finetune`'s options |
//! | `models` | yes | model folders (relative to the sweep file's folder when they exist there) or Hub ids |
//! | `methods` | no (`[full]`) | `full`, `lora-r<R>`, `lora-r<R>-a<ALPHA>` or `{lora: {r: R, alpha: A}}` |
//! | `seeds` | no (`[0]`) | seeds |
//! | `lr`, `epochs`, `batch_size` | no (finetune's default) | hyperparameter axes |
//!
//! Units are the cartesian product in the order models, methods, lr, epochs, batch_size,
//! seeds (the last varies fastest). A unit's id is made of its values
//! (`<model>-<method>[-lr<lr>][-e<epochs>][-b<batch>]-s<seed>`), so adding a value to an axis
//! keeps the ids, and the results, of the units already done.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::error::{CliError, Result};

/// A fine-tuning method of the `methods` axis.
#[derive(Debug, Clone, PartialEq)]
pub enum Method {
    /// Every parameter trained.
    Full,
    /// LoRA adapters of rank `r` (alpha: `forge finetune`'s default `2 r` when absent).
    Lora {
        /// Rank.
        r: u64,
        /// Scaling alpha.
        alpha: Option<f64>,
    },
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Method::Full => write!(f, "full"),
            Method::Lora { r, alpha: None } => write!(f, "lora-r{r}"),
            Method::Lora { r, alpha: Some(a) } => write!(f, "lora-r{r}-a{a}"),
        }
    }
}

const METHOD_FORMS: &str = "full, lora-r<R>, lora-r<R>-a<ALPHA> or {lora: {r: R, alpha: A}}";

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("unknown method {s:?}; expected {METHOD_FORMS}");
        if s == "full" {
            return Ok(Method::Full);
        }
        let rest = s.strip_prefix("lora-r").ok_or_else(bad)?;
        let (r, alpha) = match rest.split_once("-a") {
            Some((r, a)) => (r, Some(a.parse::<f64>().map_err(|_| bad())?)),
            None => (rest, None),
        };
        let r: u64 = r.parse().map_err(|_| bad())?;
        Method::lora(r, alpha)
    }
}

impl Method {
    fn lora(r: u64, alpha: Option<f64>) -> std::result::Result<Self, String> {
        if r == 0 {
            return Err("method lora: r must be at least 1, got 0".into());
        }
        if let Some(a) = alpha {
            if !(a.is_finite() && a > 0.0) {
                return Err(format!("method lora: alpha must be > 0, got {a}"));
            }
        }
        Ok(Method::Lora { r, alpha })
    }
}

/// `{lora: {r, alpha}}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoraSpec {
    r: u64,
    #[serde(default)]
    alpha: Option<f64>,
}

impl<'de> Deserialize<'de> for Method {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Method;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a method: {METHOD_FORMS}")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> std::result::Result<Method, E> {
                s.parse().map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut m: A,
            ) -> std::result::Result<Method, A::Error> {
                let key: String = m.next_key()?.ok_or_else(|| {
                    de::Error::custom(format!("empty method; expected {METHOD_FORMS}"))
                })?;
                if key != "lora" {
                    return Err(de::Error::custom(format!(
                        "unknown method {key:?}; expected {METHOD_FORMS}"
                    )));
                }
                let spec: LoraSpec = m.next_value()?;
                if let Some(k) = m.next_key::<String>()? {
                    return Err(de::Error::custom(format!(
                        "a method map holds one key (lora), found also {k:?}"
                    )));
                }
                Method::lora(spec.r, spec.alpha).map_err(de::Error::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Method {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A sweep file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepFile {
    /// Training texts (TSV).
    pub train: PathBuf,
    /// Validation texts (TSV).
    #[serde(default)]
    pub val: Option<PathBuf>,
    /// Tokens per text.
    #[serde(default)]
    pub max_length: Option<usize>,
    /// At most N rows of each file.
    #[serde(default)]
    pub max_rows: Option<usize>,
    /// Column of the texts.
    #[serde(default)]
    pub text_col: Option<String>,
    /// Column of the labels.
    #[serde(default)]
    pub label_col: Option<String>,
    /// Models axis.
    pub models: Vec<String>,
    /// Methods axis.
    #[serde(default = "default_methods")]
    pub methods: Vec<Method>,
    /// Seeds axis.
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
    /// Learning-rate axis.
    #[serde(default)]
    pub lr: Option<Vec<f64>>,
    /// Epochs axis.
    #[serde(default)]
    pub epochs: Option<Vec<usize>>,
    /// Batch-size axis.
    #[serde(default)]
    pub batch_size: Option<Vec<usize>>,
}

fn default_methods() -> Vec<Method> {
    vec![Method::Full]
}

fn default_seeds() -> Vec<u64> {
    vec![0]
}

/// One work unit: one `forge finetune` run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unit {
    /// Position in the sweep's order (0-based).
    pub index: usize,
    /// Stable id, also the name of the unit's folder.
    pub id: String,
    /// The model.
    pub model: String,
    /// The method.
    pub method: String,
    /// The seed.
    pub seed: u64,
    /// Learning rate (`None`: finetune's default).
    pub lr: Option<f64>,
    /// Epochs (`None`: finetune's default).
    pub epochs: Option<usize>,
    /// Batch size (`None`: finetune's default).
    pub batch_size: Option<usize>,
    /// The `forge finetune` arguments of the unit, without `--output`.
    pub args: Vec<String>,
}

/// A loaded sweep: the file, where it is, and its units in order.
#[derive(Debug, Clone)]
pub struct Sweep {
    /// The sweep file (absolute).
    pub path: PathBuf,
    /// Its content.
    pub file: SweepFile,
    /// Its units in order.
    pub units: Vec<Unit>,
}

fn bad(path: &Path, msg: impl fmt::Display) -> CliError {
    CliError::Input(format!("sweep file {}: {msg}", path.display()))
}

/// Checks that an axis given in the file is non-empty and has no duplicate.
fn check_axis<T: PartialEq + fmt::Debug>(path: &Path, name: &str, v: &[T]) -> Result<()> {
    if v.is_empty() {
        return Err(bad(
            path,
            format!("`{name}` is empty; give at least one value (or leave the field out for its default)"),
        ));
    }
    for (i, x) in v.iter().enumerate() {
        if v[..i].contains(x) {
            return Err(bad(path, format!("`{name}` lists {x:?} twice")));
        }
    }
    Ok(())
}

/// `[A-Za-z0-9._]` kept, anything else `-`.
fn slug(s: &str) -> String {
    let last = Path::new(s.trim_end_matches('/'))
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| s.to_string());
    last.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

impl Sweep {
    /// Reads and expands a sweep file.
    ///
    /// # Errors
    /// [`CliError::MissingInput`] when the file does not exist; [`CliError::Input`] naming the
    /// file and the field for bad YAML/JSON, unknown fields, empty axes, duplicate values,
    /// bad methods or values, and two units with one id.
    pub fn load(path: &Path) -> Result<Self> {
        if !path.is_file() {
            return Err(CliError::MissingInput {
                what: "sweep file",
                path: path.to_path_buf(),
            });
        }
        let path = std::path::absolute(path)?;
        let text = std::fs::read_to_string(&path)?;
        let file: SweepFile = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text).map_err(|e| bad(&path, e))?
        } else {
            serde_yaml_ng::from_str(&text).map_err(|e| bad(&path, e))?
        };
        let units = expand(&path, &file)?;
        Ok(Self { path, file, units })
    }
}

fn expand(path: &Path, f: &SweepFile) -> Result<Vec<Unit>> {
    check_axis(path, "models", &f.models)?;
    check_axis(path, "methods", &f.methods)?;
    check_axis(path, "seeds", &f.seeds)?;
    let opt_axis = |name: &str, v: &Option<Vec<usize>>| -> Result<Vec<Option<usize>>> {
        match v {
            None => Ok(vec![None]),
            Some(v) => {
                check_axis(path, name, v)?;
                if v.contains(&0) {
                    return Err(bad(
                        path,
                        format!("`{name}` values must be at least 1, got 0"),
                    ));
                }
                Ok(v.iter().copied().map(Some).collect())
            }
        }
    };
    let lrs: Vec<Option<f64>> = match &f.lr {
        None => vec![None],
        Some(v) => {
            check_axis(path, "lr", v)?;
            if let Some(x) = v.iter().find(|x| !(x.is_finite() && **x > 0.0)) {
                return Err(bad(path, format!("`lr` values must be > 0, got {x}")));
            }
            v.iter().copied().map(Some).collect()
        }
    };
    let epochs = opt_axis("epochs", &f.epochs)?;
    let batches = opt_axis("batch_size", &f.batch_size)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_path = |p: &Path| -> Result<String> {
        Ok(std::path::absolute(dir.join(p))?
            .to_string_lossy()
            .into_owned())
    };
    let mut common = vec!["--train".to_string(), file_path(&f.train)?];
    if let Some(v) = &f.val {
        common.extend(["--val".into(), file_path(v)?]);
    }
    for (name, v) in [
        ("--max-length", f.max_length.map(|x| x.to_string())),
        ("--max-rows", f.max_rows.map(|x| x.to_string())),
        ("--text-col", f.text_col.clone()),
        ("--label-col", f.label_col.clone()),
    ] {
        if let Some(v) = v {
            common.extend([name.to_string(), v]);
        }
    }
    let mut units = Vec::new();
    for model in &f.models {
        let local = dir.join(model);
        let model_arg = if local.exists() {
            std::path::absolute(&local)?.to_string_lossy().into_owned()
        } else {
            model.clone()
        };
        for method in &f.methods {
            for &lr in &lrs {
                for &ep in &epochs {
                    for &bs in &batches {
                        for &seed in &f.seeds {
                            let mut id = format!("{}-{method}", slug(model));
                            let mut args = vec!["--model".to_string(), model_arg.clone()];
                            args.extend(common.iter().cloned());
                            if let Method::Lora { r, alpha } = method {
                                args.extend(["--lora".into(), r.to_string()]);
                                if let Some(a) = alpha {
                                    args.extend(["--lora-alpha".into(), a.to_string()]);
                                }
                            }
                            if let Some(lr) = lr {
                                id += &format!("-lr{lr:e}");
                                args.extend(["--lr".into(), format!("{lr:e}")]);
                            }
                            if let Some(e) = ep {
                                id += &format!("-e{e}");
                                args.extend(["--epochs".into(), e.to_string()]);
                            }
                            if let Some(b) = bs {
                                id += &format!("-b{b}");
                                args.extend(["--batch-size".into(), b.to_string()]);
                            }
                            id += &format!("-s{seed}");
                            args.extend(["--seed".into(), seed.to_string()]);
                            units.push(Unit {
                                index: units.len(),
                                id,
                                model: model.clone(),
                                method: method.to_string(),
                                seed,
                                lr,
                                epochs: ep,
                                batch_size: bs,
                                args,
                            });
                        }
                    }
                }
            }
        }
    }
    for (i, u) in units.iter().enumerate() {
        if let Some(o) = units[..i].iter().find(|o| o.id == u.id) {
            return Err(bad(
                path,
                format!(
                    "models {:?} and {:?} give units the same id {:?} (same folder name); rename one folder",
                    o.model, u.model, u.id
                ),
            ));
        }
    }
    Ok(units)
}
