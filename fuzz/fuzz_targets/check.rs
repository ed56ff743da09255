//! Arbitrary bytes through the whole frontend, as `strata check` runs it: parse, typed
//! instructions, expansion, scoping, stage resolution and lowering. No panic, no hang, no
//! stack overflow; every problem has a place in the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_frontend::{BuildOptions, ImageResolver, Platform, ResolvedImage};
use strata_graph::ImageConfig;

/// Every base image exists; `trigger` images carry an ONBUILD trigger and an env, so that
/// inherited triggers and config get exercised too.
struct AnyImage;

impl ImageResolver for AnyImage {
    fn resolve(&self, reference: &str, platform: &Platform) -> Result<ResolvedImage, String> {
        let mut config = ImageConfig::default();
        if reference.contains("trigger") {
            config.on_build = vec!["RUN echo ${X:-triggered}".into()];
            config.env = vec!["X=1".into(), "PATH=/bin".into()];
        }
        Ok(ResolvedImage {
            reference: reference.to_owned(),
            id: format!("sha256:{reference}"),
            platform: platform.clone(),
            config,
        })
    }
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the options: lower every stage (as `strata check`) or only what
    // the last stage needs (as `strata build`), and a target of stage 0.
    let Some((&options, source)) = data.split_first() else {
        return;
    };
    let opts = BuildOptions {
        all_stages: options & 1 == 0,
        target: (options & 2 != 0).then(|| "0".to_owned()),
        ..BuildOptions::default()
    };
    let lines = source.split(|&b| b == b'\n').count() as u32;
    for d in strata_frontend::check(source, &opts, &AnyImage).iter() {
        assert!(d.loc.line >= 1 && d.loc.line <= lines.max(1), "{d}");
        assert!(d.loc.column >= 1, "{d}");
    }
});
