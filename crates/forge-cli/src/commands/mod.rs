//! The `forge` subcommands, one module each.

pub mod gate;
pub mod lora;
pub mod track;
pub mod tree;
