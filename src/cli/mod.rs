//! The `gram` command line: a thin layer over the library. Each subcommand is one file with its
//! clap arguments and a `run` function.

pub mod common;
pub mod devices;
pub mod eval;
pub mod judge;
pub mod merge;
pub mod pairs;
pub mod rank;
pub mod reward;
pub mod serve;
pub mod train;
