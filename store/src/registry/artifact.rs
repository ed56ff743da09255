//! Artifacts that are not images, for the build cache (`--cache-to type=registry`): blobs of
//! the store pushed as they are, a manifest or index pushed under a tag, and one blob fetched
//! into the store. These are the requests `push` and `pull` make, without the image around
//! them: the same HEAD-first upload, the same verified, resumable download.

use crate::digest::Digest;
use crate::reference::Reference;
use crate::registry::client::RegistryClient;
use crate::registry::error::RegistryError;
use crate::registry::transfer::in_parallel;
use crate::store::Store;

impl RegistryClient {
    /// Downloads blob `digest` (`size` bytes) of `reference`'s repository into `store`,
    /// verified against its digest (resumed with `Range` if the stream breaks, retried once
    /// from scratch if the bytes are wrong).
    pub fn fetch_blob_into(
        &self,
        store: &Store,
        reference: &Reference,
        digest: &Digest,
        size: u64,
    ) -> Result<(), RegistryError> {
        self.download_blob(store, reference, digest, size, &|_| {})
    }

    /// Makes sure `reference`'s repository has each blob of `store` in `digests`: asks with
    /// `HEAD` first and uploads only the missing ones, a few at a time. Returns the digests it
    /// uploaded.
    pub fn push_blobs(
        &self,
        store: &Store,
        reference: &Reference,
        digests: &[Digest],
    ) -> Result<Vec<Digest>, RegistryError> {
        let sent = in_parallel(
            digests,
            self.options().max_concurrent_uploads,
            |digest| -> Result<Option<Digest>, RegistryError> {
                if self.blob_exists(reference, digest)? {
                    return Ok(None);
                }
                self.upload_blob(store, reference, digest, None, &|_| {})?;
                Ok(Some(digest.clone()))
            },
        )?;
        Ok(sent.into_iter().flatten().collect())
    }

    /// Puts `bytes` (a manifest or an index of media type `media_type`, whose blobs the
    /// repository has) under `reference`'s tag (`latest` without one). Returns its digest.
    pub fn push_manifest(
        &self,
        reference: &Reference,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Digest, RegistryError> {
        let tag = reference.tag().unwrap_or("latest");
        self.put_manifest(reference, tag, media_type, bytes)?;
        Ok(Digest::of(bytes))
    }
}
