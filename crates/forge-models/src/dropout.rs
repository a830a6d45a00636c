//! Seeded dropout, re-exported from forge-lora ([`forge_lora::dropout`]): the encoders' dropout
//! and LoRA adapters' input dropout draw from one per-thread stream that [`set_dropout_seed`]
//! resets (the training loop does so from its seed), so a run, LoRA included, is reproducible
//! bit for bit.

pub use forge_lora::dropout::{seeded_dropout, set_dropout_seed};
