//! forge-lora (under construction).
#![deny(missing_docs)]
