//! `import`: a root filesystem tarball (plain, gzip or zstd) becomes a one-layer image, like
//! `docker import`. The tar is parsed while it streams into the layer writer, so a truncated
//! or malformed tarball is refused before anything is indexed.

use crate::compression::{Compression, decompressed};
use crate::digest::Digest;
use crate::error::StoreError;
use crate::image::{History, ImageConfigFile, NewImage, now_rfc3339};
use crate::platform::Platform;
use crate::reference::Reference;
use crate::store::Store;
use serde_json::Value;
use std::io::{self, Read, Write};

/// How [`Store::import`] builds the image.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The runtime config (`config` in the image config: `Cmd`, `Env`, ...), from `--change`.
    pub runtime_config: Value,
    /// References to point at the new image.
    pub tags: Vec<Reference>,
    /// How to compress the layer.
    pub compression: Compression,
    /// Where the tarball came from (`-` for stdin), for the history comment.
    pub source: String,
    /// An optional commit message (`docker import -m`).
    pub message: Option<String>,
    /// The platform the image says it is for (`docker import --platform`); `None`: this
    /// machine's.
    pub platform: Option<Platform>,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            runtime_config: Value::Object(serde_json::Map::new()),
            tags: Vec::new(),
            compression: Compression::Gzip,
            source: "-".into(),
            message: None,
            platform: None,
        }
    }
}

impl Store {
    /// Imports a rootfs tarball as a one-layer image and returns its ID.
    ///
    /// ```no_run
    /// use strata_store::{ImportOptions, Reference, Store};
    /// # let store = Store::open("/tmp/s")?;
    /// let id = store.import(
    ///     std::fs::File::open("rootfs.tar.gz")?,
    ///     ImportOptions {
    ///         tags: vec![Reference::parse("base:1")?],
    ///         runtime_config: serde_json::json!({ "Cmd": ["/bin/sh"] }),
    ///         ..ImportOptions::default()
    ///     },
    /// )?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn import(&self, input: impl Read, options: ImportOptions) -> Result<Digest, StoreError> {
        let _lease = self.lease()?;
        let what = format!("rootfs tarball {}", options.source);
        let tar = decompressed(input).map_err(StoreError::stream(format!("read {what}")))?;
        let mut layer = self.layer_writer(options.compression)?;
        let mut tee = Tee {
            inner: tar,
            out: &mut layer,
            hit_eof: false,
        };
        validate_tar(&mut tee, &what)?;
        io::copy(&mut tee, &mut io::sink()).map_err(StoreError::stream(format!("read {what}")))?;
        let layer = layer.finish()?;
        let created = now_rfc3339();
        let comment = match &options.message {
            Some(m) => m.clone(),
            None => format!("Imported from {}", options.source),
        };
        let mut extra = serde_json::Map::new();
        // docker import writes the comment at the top level too (`docker inspect` .Comment).
        extra.insert("comment".into(), Value::String(comment.clone()));
        let mut config = ImageConfigFile {
            extra,
            created: Some(created.clone()),
            config: Some(options.runtime_config),
            history: vec![History {
                created: Some(created),
                comment: Some(comment),
                ..History::default()
            }],
            ..ImageConfigFile::default()
        };
        config.set_platform(&options.platform.unwrap_or_else(Platform::host));
        self.commit_image(NewImage {
            config,
            layers: vec![layer],
            tags: options.tags,
        })
    }
}

/// Reads a whole tar stream and fails unless it is well formed and ends with its end-of-archive
/// block (a tarball cut at a 512-byte boundary is still truncated).
pub(crate) fn validate_tar<R: Read>(tee: &mut Tee<'_, R>, what: &str) -> Result<(), StoreError> {
    let mut archive = tar::Archive::new(&mut *tee);
    let entries = archive
        .entries()
        .map_err(|e| StoreError::archive(what, crate::untrusted::tar_reason(&e)))?;
    for entry in entries {
        let mut entry =
            entry.map_err(|e| StoreError::archive(what, crate::untrusted::tar_reason(&e)))?;
        let size = entry.size();
        let n = io::copy(&mut entry, &mut io::sink())
            .map_err(|e| StoreError::archive(what, crate::untrusted::tar_reason(&e)))?;
        if n != size {
            return Err(StoreError::archive(
                what,
                format!(
                    "truncated: entry {:?} should have {size} bytes but has {n}",
                    String::from_utf8_lossy(&entry.path_bytes())
                ),
            ));
        }
    }
    if archive.into_inner().hit_eof {
        return Err(StoreError::archive(
            what,
            "truncated: the stream ends before the end-of-archive marker",
        ));
    }
    Ok(())
}

/// Copies what is read through it into `out`, and notes when the input ran dry.
pub(crate) struct Tee<'a, R> {
    pub(crate) inner: R,
    pub(crate) out: &'a mut dyn Write,
    pub(crate) hit_eof: bool,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.hit_eof = true;
        }
        self.out.write_all(&buf[..n])?;
        Ok(n)
    }
}
