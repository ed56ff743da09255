//! Base images come from the store: `FROM` names an image that `strata load`, `import` or an
//! earlier build put there (strata does not pull yet).

use strata_frontend::{ImageResolver, Platform, ResolvedImage};
use strata_graph::ImageConfig;
use strata_store::Store;

/// Resolves `FROM` references against the store.
pub(crate) struct StoreResolver<'a> {
    pub(crate) store: &'a Store,
}

impl ImageResolver for StoreResolver<'_> {
    fn resolve(&self, reference: &str, platform: &Platform) -> Result<ResolvedImage, String> {
        let image = self.store.image(reference).map_err(|e| {
            format!("{e} (strata does not pull yet: `strata load` or `strata import` it first)")
        })?;
        let config: ImageConfig = match &image.config.config {
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| format!("image {reference} has an unreadable config: {e}"))?,
            None => ImageConfig::default(),
        };
        let image_platform = image.config.platform();
        if !image.config.architecture.is_empty() && image_platform.arch != platform.arch {
            return Err(format!(
                "image {reference} is for {}, not {}",
                image_platform.format(),
                platform.format()
            ));
        }
        Ok(ResolvedImage {
            reference: reference.to_owned(),
            id: image.id.to_string(),
            platform: image_platform,
            config,
        })
    }
}
