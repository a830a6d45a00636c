//! The fine-tuning strategies of the transformer scenarios: full fine-tuning and LoRA (Hu et al.
//! 2021, "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022) on the attention
//! query/value projections, the heads trained in full (PEFT's `modules_to_save`).

use crate::error::{BenchError, Result};
use crate::scenario::StrategySpec;
use crate::schema::{Config, StrategyKind};
use forge_lora::{LoraConfig, TargetModules};
use forge_models::AnyClassifier;

/// Learning rate of full fine-tuning (the parity recipe of docs/training-parity.md, as
/// Hugging Face's GLUE examples).
pub const FULL_LR: f64 = 5e-5;

/// Learning rate of LoRA (the parity recipe; LoRA trains a few thousand times fewer weights and
/// needs a ~10x higher rate, Hu et al. 2021, appendix D).
pub const LORA_LR: f64 = 5e-4;

/// `lora_alpha / r`: alpha is twice the rank (the parity recipe's r 8, alpha 16), so that every
/// rank starts with the same update scale.
pub const LORA_ALPHA_PER_RANK: f64 = 2.0;

/// How a pretrained encoder is adapted to the task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FineTune {
    /// Every weight trained (the baseline every saving is measured against).
    Full,
    /// A rank-`rank` LoRA adapter on query/value, the pooler and classifier trained in full.
    Lora {
        /// The adapter rank `r`.
        rank: usize,
    },
}

impl FineTune {
    /// Strategy name: `full-ft`, `lora-r{rank}`.
    pub fn name(self) -> String {
        match self {
            FineTune::Full => "full-ft".into(),
            FineTune::Lora { rank } => format!("lora-r{rank}"),
        }
    }

    /// Its role: full fine-tuning is the baseline, LoRA a transfer.
    pub fn kind(self) -> StrategyKind {
        match self {
            FineTune::Full => StrategyKind::Baseline,
            FineTune::Lora { .. } => StrategyKind::Transfer,
        }
    }

    /// One-line description.
    pub fn description(self) -> String {
        match self {
            FineTune::Full => {
                "every weight of the pretrained encoder and a new head trained".into()
            }
            FineTune::Lora { rank } => format!(
                "LoRA r {rank} (alpha {}) on query/value, pooler and classifier trained, the \
                 encoder frozen (Hu et al. 2021)",
                Self::alpha(rank)
            ),
        }
    }

    /// The [`StrategySpec`] the scenario lists.
    pub fn spec(self) -> StrategySpec {
        StrategySpec::new(&self.name(), self.kind(), false, &self.description())
    }

    /// The strategy called `name` among `all`.
    ///
    /// # Errors
    /// [`BenchError::UnknownStrategy`] naming `scenario` and `name`.
    pub fn find(all: &[FineTune], scenario: &str, name: &str) -> Result<FineTune> {
        all.iter()
            .copied()
            .find(|s| s.name() == name)
            .ok_or_else(|| BenchError::UnknownStrategy {
                scenario: scenario.into(),
                strategy: name.into(),
            })
    }

    /// Its learning rate.
    pub fn learning_rate(self) -> f64 {
        match self {
            FineTune::Full => FULL_LR,
            FineTune::Lora { .. } => LORA_LR,
        }
    }

    fn alpha(rank: usize) -> f64 {
        LORA_ALPHA_PER_RANK * rank as f64
    }

    /// The LoRA configuration for `model`'s architecture (`None` for full fine-tuning): query
    /// and value projections (`query`/`value` in BERT, `q_lin`/`v_lin` in DistilBERT), the head
    /// modules (`pooler.dense` + `classifier`, or `pre_classifier` + `classifier`) saved in full.
    pub fn lora_config(self, model: &AnyClassifier) -> Option<LoraConfig> {
        let FineTune::Lora { rank } = self else {
            return None;
        };
        let (targets, heads): (&[&str], &[&str]) = match model {
            AnyClassifier::Bert(_) => (&["query", "value"], &["pooler.dense", "classifier"]),
            AnyClassifier::DistilBert(_) => {
                (&["q_lin", "v_lin"], &["pre_classifier", "classifier"])
            }
        };
        Some(LoraConfig::new(rank, Self::alpha(rank), targets).with_modules_to_save(heads))
    }

    /// The strategy's entries of a record's `config` map (rank, alpha, targets, learning rate).
    pub fn config(self, lora: Option<&LoraConfig>) -> Config {
        let mut c = Config::new();
        c.insert("strategy".into(), self.name().into());
        c.insert("lr".into(), self.learning_rate().into());
        match (self, lora) {
            (FineTune::Lora { rank }, Some(l)) => {
                c.insert("rank".into(), rank.into());
                c.insert("lora_alpha".into(), l.lora_alpha.into());
                let targets = match &l.target_modules {
                    TargetModules::Names(v) => v.join(","),
                    TargetModules::Single(s) => s.clone(),
                };
                c.insert("target_modules".into(), targets.into());
                let saved = l.modules_to_save.clone().unwrap_or_default().join(",");
                c.insert("modules_to_save".into(), saved.into());
            }
            _ => {
                c.insert("rank".into(), 0usize.into());
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_roles_and_lookup() {
        let all = [
            FineTune::Full,
            FineTune::Lora { rank: 4 },
            FineTune::Lora { rank: 8 },
        ];
        assert_eq!(all.map(|s| s.name()), ["full-ft", "lora-r4", "lora-r8"]);
        assert_eq!(FineTune::Full.kind(), StrategyKind::Baseline);
        assert_eq!(FineTune::find(&all, "s", "lora-r8").unwrap(), all[2]);
        let e = FineTune::find(&all, "s", "lora-r16").unwrap_err();
        assert!(e.to_string().contains("lora-r16"), "{e}");
    }
}
