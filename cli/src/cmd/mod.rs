//! One module per subcommand: its clap arguments and `run`.

pub(crate) mod check;
pub(crate) mod parse;
