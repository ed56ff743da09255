//! Arbitrary bytes through the whole frontend, as `strata check` runs it: parse, typed
//! instructions, expansion, scoping, stage resolution and lowering. No panic, no hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_frontend::{BuildOptions, ImageResolver, Platform, ResolvedImage};
use strata_graph::ImageConfig;

/// Every base image exists, with an empty config.
struct AnyImage;

impl ImageResolver for AnyImage {
    fn resolve(&self, reference: &str, platform: &Platform) -> Result<ResolvedImage, String> {
        Ok(ResolvedImage {
            reference: reference.to_owned(),
            id: String::new(),
            platform: platform.clone(),
            config: ImageConfig::default(),
        })
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = strata_frontend::check(data, &BuildOptions::default(), &AnyImage);
});
