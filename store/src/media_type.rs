//! Media types: the one list of the `mediaType` strings strata reads and writes, for images
//! (OCI and the docker schema 2 types accepted on input), layers (one per [`Compression`]) and
//! strata's own cache artifact. Plain `&str` constants, because they are compared with JSON
//! fields; a test pins the OCI ones to oci-spec's [`oci_spec::image::MediaType`].
//!
//! [`Compression`]: crate::Compression

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI layer, uncompressed tar.
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI layer, gzip-compressed tar.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI layer, zstd-compressed tar.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Docker schema 2 manifest (accepted on input).
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list (accepted on input).
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image config (accepted on input).
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker layer, gzip-compressed tar (accepted on input).
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// The config blob of a strata cache artifact (`--cache-to type=local`).
pub const STRATA_CACHE_CONFIG: &str = "application/vnd.strata.cache.config.v1+json";
/// The `artifactType` of a strata cache artifact's manifest.
pub const STRATA_CACHE_ARTIFACT: &str = "application/vnd.strata.cache.v1";
/// A blob of a strata cache holding the file list of one COPY selection (for `--explain`).
pub const STRATA_CACHE_SELECTION: &str = "application/vnd.strata.cache.selection.v1";
/// The config blob of a BuildKit cache (`--cache-to type=registry` of BuildKit): recognised
/// only to say that strata cannot use it.
pub const BUILDKIT_CACHE_CONFIG: &str = "application/vnd.buildkit.cacheconfig.v0";

/// Whether `media_type` is a manifest list (OCI index or docker list).
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// Whether `media_type` is a single-image manifest (OCI or docker schema 2).
pub fn is_manifest(media_type: &str) -> bool {
    media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::MediaType;

    #[test]
    fn agree_with_oci_spec() {
        for (ours, theirs) in [
            (OCI_MANIFEST, MediaType::ImageManifest),
            (OCI_INDEX, MediaType::ImageIndex),
            (OCI_CONFIG, MediaType::ImageConfig),
            (OCI_LAYER, MediaType::ImageLayer),
            (OCI_LAYER_GZIP, MediaType::ImageLayerGzip),
            (OCI_LAYER_ZSTD, MediaType::ImageLayerZstd),
        ] {
            assert_eq!(ours, theirs.to_string());
            assert_eq!(MediaType::from(ours), theirs);
        }
    }

    #[test]
    fn kinds() {
        assert!(is_index(OCI_INDEX) && is_index(DOCKER_MANIFEST_LIST));
        assert!(is_manifest(OCI_MANIFEST) && is_manifest(DOCKER_MANIFEST));
        assert!(!is_index(OCI_MANIFEST) && !is_manifest(OCI_INDEX) && !is_manifest(OCI_CONFIG));
    }
}
