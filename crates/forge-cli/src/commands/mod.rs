//! The `forge` subcommands, one module each.

pub mod finetune;
pub mod gate;
pub mod lora;
pub mod merge;
pub mod rank;
pub mod sweep;
pub mod texts;
pub mod track;
pub mod tree;
