//! End-to-end tests of the `strata` binary, one module per area.

mod build;
mod cache_gc;
mod cache_mounts;
mod check;
mod ci_cache;
mod conformance;
mod container_health;
mod container_net;
mod container_run;
mod container_tools;
mod container_tty;
mod containers;
#[path = "../../../store/src/confined/corpus.rs"]
mod corpus;
mod distribution;
mod docker_interop;
#[path = "../../../store/tests/fixture/docker_registry.rs"]
mod docker_registry;
mod dockerd;
mod faults;
mod git_add;
mod hostile;
#[path = "../../../store/tests/fixture/hostile_expect.rs"]
mod hostile_expect;
mod manifest_list;
mod network;
mod parse;
#[path = "../../../store/tests/fixture/proxy.rs"]
mod proxy;
mod registry;
mod registry_cache;
mod registry_config;
mod report;
mod rootless;
mod sandbox;
mod secrets;
mod store;
mod store_faults;
mod support;
mod token_server;
mod torture;
