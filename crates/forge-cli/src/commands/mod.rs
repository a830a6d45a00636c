//! The `forge` subcommands, one module each.

pub mod gate;
pub mod lora;
pub mod merge;
pub mod rank;
pub mod track;
pub mod tree;
