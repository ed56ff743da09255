//! One module per subcommand: its clap arguments and `run`.

pub(crate) mod build;
pub(crate) mod builder;
pub(crate) mod check;
pub(crate) mod commit;
pub(crate) mod container;
pub(crate) mod cp;
pub(crate) mod diff;
pub(crate) mod export;
pub(crate) mod history;
pub(crate) mod image;
pub(crate) mod images;
pub(crate) mod import;
pub(crate) mod inspect;
pub(crate) mod load;
pub(crate) mod login;
pub(crate) mod logs;
pub(crate) mod manifest;
pub(crate) mod parse;
pub(crate) mod ps;
pub(crate) mod pull;
pub(crate) mod push;
pub(crate) mod rmi;
pub(crate) mod save;
pub(crate) mod search;
pub(crate) mod system;
pub(crate) mod tag;
