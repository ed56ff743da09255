//! End-to-end tests of the `strata` binary, one module per area.

mod build;
mod check;
mod ci_cache;
mod conformance;
mod distribution;
#[path = "../../../store/tests/fixture/docker_registry.rs"]
mod docker_registry;
mod parse;
mod registry;
mod registry_cache;
mod report;
mod store;
mod support;
