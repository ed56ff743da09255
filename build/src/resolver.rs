//! Base images come from the store: `FROM` names an image that `strata pull`, `load`, `import`
//! or an earlier build put there. One the store lacks is pulled first, for the build's
//! platform, when the request has a registry client; with `--pull`, every one is pulled
//! (a registry that has no newer image answers "up to date" after one manifest request).

use crate::error::error_chain;
use std::collections::BTreeSet;
use std::sync::Mutex;
use strata_frontend::{ImageResolver, Platform, ResolvedImage};
use strata_graph::ImageConfig;
use strata_store::{Reference, RegistryClient, Store, StoreError};

/// Resolves `FROM` references against the store, pulling what it lacks.
pub(crate) struct StoreResolver<'a> {
    pub(crate) store: &'a Store,
    pub(crate) registry: Option<&'a RegistryClient>,
    /// `--pull`: pull every base image, once per build, even when the store has it.
    pub(crate) always_pull: bool,
    /// The references pulled by this build already (several `FROM`s may name one image).
    pub(crate) pulled: Mutex<BTreeSet<String>>,
}

impl StoreResolver<'_> {
    /// Pulls `reference` for `platform` into the store.
    fn pull(
        &self,
        registry: &RegistryClient,
        reference: &str,
        platform: &Platform,
    ) -> Result<(), String> {
        let parsed = Reference::parse(reference).map_err(|e| e.to_string())?;
        registry
            .pull(self.store, &parsed, Some(platform), &|_| {})
            .map_err(|e| format!("failed to pull: {}", error_chain(&e)))?;
        self.pulled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(reference.to_owned());
        Ok(())
    }

    /// The image `reference` names, pulled first if the store lacks it (or `--pull` asks for
    /// it) and we may pull.
    fn image(&self, reference: &str, platform: &Platform) -> Result<strata_store::Image, String> {
        if let Some(registry) = self.registry.filter(|_| self.always_pull) {
            let done = self
                .pulled
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .contains(reference);
            if !done {
                self.pull(registry, reference, platform)?;
            }
        }
        match (self.store.image(reference), self.registry) {
            (Err(StoreError::ImageNotFound(_)), Some(registry)) => {
                self.pull(registry, reference, platform)?;
                self.store.image(reference).map_err(|e| e.to_string())
            }
            (Err(e @ StoreError::ImageNotFound(_)), None) => Err(format!(
                "{e} (`strata pull`, `strata load` or `strata import` it first)"
            )),
            (result, _) => result.map_err(|e| e.to_string()),
        }
    }
}

impl ImageResolver for StoreResolver<'_> {
    fn resolve(&self, reference: &str, platform: &Platform) -> Result<ResolvedImage, String> {
        let image = self.image(reference, platform)?;
        let config: ImageConfig = match &image.config.config {
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| format!("image {reference} has an unreadable config: {e}"))?,
            None => ImageConfig::default(),
        };
        // An image of another platform is used as BuildKit does, with the frontend's
        // InvalidBaseImagePlatform warning (an image that names none is taken as asked for).
        let platform = if image.config.architecture.is_empty() {
            platform.clone()
        } else {
            image.config.platform()
        };
        Ok(ResolvedImage {
            reference: reference.to_owned(),
            id: image.id.to_string(),
            platform,
            config,
        })
    }
}

/// `strata check`'s base images: the store's image when it has one (its config and platform,
/// so ENV-dependent checks and InvalidBaseImagePlatform judge it as a build would), else a
/// stand-in with an empty config that the frontend knows to be one. Nothing is pulled.
pub(crate) struct CheckResolver<'a> {
    pub(crate) store: Option<StoreResolver<'a>>,
    /// The references the store had.
    pub(crate) known: Mutex<BTreeSet<String>>,
}

impl ImageResolver for CheckResolver<'_> {
    fn resolve(&self, reference: &str, platform: &Platform) -> Result<ResolvedImage, String> {
        if let Some(store) = &self.store
            && let Ok(image) = store.resolve(reference, platform)
        {
            self.known
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(reference.to_owned());
            return Ok(image);
        }
        Ok(ResolvedImage {
            reference: reference.to_owned(),
            id: String::new(),
            platform: platform.clone(),
            config: ImageConfig::default(),
        })
    }

    fn config_known(&self, reference: &str) -> bool {
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(reference)
    }
}
