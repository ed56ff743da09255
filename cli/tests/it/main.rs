//! End-to-end tests of the `strata` binary, one module per area.

mod check;
mod parse;
mod support;
