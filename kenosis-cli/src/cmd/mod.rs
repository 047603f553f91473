//! One module per command: clap `Args` plus `run(&Global, Args) -> CmdResult`.

pub mod cast;
pub mod diff;
pub mod inspect;
pub mod prepare;
pub mod quantize;
pub mod validate;
