//! `save`: images as one tarball that is at the same time an OCI image layout (`oci-layout`,
//! `index.json`, `blobs/sha256/…`) and a docker archive (`manifest.json`, `repositories`,
//! pointing into the same blobs), so `docker load`, skopeo, umoci and `strata load` all read it.
//! The bytes depend only on the images: sorted members, zero times and owners, and JSON written
//! with sorted keys (oci-spec's annotation maps are hash maps, so the index is written here).

use crate::compression::{Compression, Encoder, decompressed};
use crate::digest::{Digest, HashingReader, HashingWriter};
use crate::durable::{EarlyWriteback, Writeback};
use crate::error::StoreError;
use crate::image::{Image, build_manifest};
use crate::layer::LayerDescriptor;
use crate::media_type::{OCI_INDEX, OCI_MANIFEST};
use crate::reference::Reference;
use crate::store::Store;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufWriter, Read, Seek, Write};
use std::path::PathBuf;

/// How [`Store::save_with`] writes images.
#[derive(Debug, Clone, Default)]
pub struct SaveOptions {
    /// Recompress layers that are not already in this compression (`save --compression`).
    /// The images keep their IDs (diff IDs do not change) but get new manifests. `None` writes
    /// layers as stored.
    pub compression: Option<Compression>,
}

/// Recompressed layers live here until the archive is written.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = crate::staging::remove_tree(&self.0);
    }
}

/// Where the bytes of a blob in the archive come from.
enum Source {
    Store,
    Temp(PathBuf),
    Bytes(Vec<u8>),
}

impl Store {
    /// Writes the images `names` (references or IDs) as one tarball to `out`. An image named
    /// by reference carries that tag in the archive; one named by ID carries none.
    ///
    /// ```no_run
    /// # let store = strata_store::Store::open("/tmp/s")?;
    /// let out = std::fs::File::create("images.tar")?;
    /// store.save(&["busybox:latest", "app:1"], out)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn save(&self, names: &[&str], out: impl Write) -> Result<(), StoreError> {
        self.save_with(names, out, &SaveOptions::default())
    }

    /// [`Store::save`] with options.
    pub fn save_with(
        &self,
        names: &[&str],
        out: impl Write,
        options: &SaveOptions,
    ) -> Result<(), StoreError> {
        self.save_into(names, out, options, None)
    }

    /// [`Store::save_with`] into a file, written from its current position: the stored blobs
    /// of 1 MiB and more go from the store into it by `copy_file_range` (in the kernel, no copy
    /// through this process; verified against their digest by a second reader on another
    /// thread meanwhile). A blob that fails that check fails the save, and the file then holds
    /// its bytes: write to a temp file and rename it into place only on success.
    pub fn save_to_file(
        &self,
        names: &[&str],
        file: &std::fs::File,
        options: &SaveOptions,
    ) -> Result<(), StoreError> {
        self.save_into(
            names,
            BufWriter::with_capacity(1 << 20, file),
            options,
            Some(file),
        )
    }

    /// The save; `file`, when given, is the file `out` writes to, for the kernel copies.
    fn save_into(
        &self,
        names: &[&str],
        out: impl Write,
        options: &SaveOptions,
        file: Option<&std::fs::File>,
    ) -> Result<(), StoreError> {
        let _lease = self.lease()?;
        let index = self.read_index()?;
        // Image ID → (image, references to write), in the order first named.
        let mut order: Vec<Digest> = Vec::new();
        let mut images: BTreeMap<Digest, (Image, Vec<Reference>)> = BTreeMap::new();
        for name in names {
            let id = crate::image::resolve_in(&index, name)?;
            let tag = Reference::parse(name)
                .ok()
                .filter(|r| r.tag().is_some() && index.tags.get(&r.to_string()) == Some(&id));
            if !images.contains_key(&id) {
                let image = self.load_image(&index, &id)?;
                order.push(id.clone());
                images.insert(id.clone(), (image, Vec::new()));
            }
            let (_, tags) = images.get_mut(&id).expect("inserted above");
            if let Some(tag) = tag
                && !tags.contains(&tag)
            {
                tags.push(tag);
            }
        }

        let mut blobs: BTreeMap<Digest, (u64, Source)> = BTreeMap::new();
        let scratch = match options.compression {
            Some(_) => Some(Scratch(
                self.staging("recompress layers")?.temp_dir("save-")?,
            )),
            None => None,
        };
        let mut index_manifests = Vec::new();
        let mut docker_manifest = Vec::new();
        let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for id in &order {
            let (image, tags) = &images[id];
            blobs.insert(
                image.id.clone(),
                (image.config_bytes.len() as u64, Source::Store),
            );
            let mut layers = image.layers.clone();
            let (manifest_digest, manifest_media_type, manifest_size) =
                match (options.compression, &scratch) {
                    (Some(want), Some(Scratch(dir))) if needs_transcode(self, &layers, want)? => {
                        for l in &mut layers {
                            if self.layer_compression(l)? != want {
                                let (desc, path) = self.transcode(l, want, dir)?;
                                *l = desc;
                                blobs.insert(l.digest.clone(), (l.size, Source::Temp(path)));
                            }
                        }
                        let bytes =
                            build_manifest(&image.id, image.config_bytes.len() as u64, &layers)?;
                        let digest = Digest::of(&bytes);
                        let size = bytes.len() as u64;
                        blobs.insert(digest.clone(), (size, Source::Bytes(bytes)));
                        (digest, OCI_MANIFEST.to_owned(), size)
                    }
                    _ => {
                        let size = self.blob_size(&image.manifest_digest)?;
                        blobs.insert(image.manifest_digest.clone(), (size, Source::Store));
                        (
                            image.manifest_digest.clone(),
                            image.manifest_media_type.clone(),
                            size,
                        )
                    }
                };
            for l in &layers {
                blobs
                    .entry(l.digest.clone())
                    .or_insert((l.size, Source::Store));
            }
            let descriptor = |annotations: Option<Value>| {
                let mut d = json!({
                    "mediaType": manifest_media_type,
                    "digest": manifest_digest.as_str(),
                    "size": manifest_size,
                });
                if let Some(a) = annotations {
                    d["annotations"] = a;
                }
                d
            };
            if tags.is_empty() {
                index_manifests.push(descriptor(None));
            }
            for tag in tags {
                index_manifests.push(descriptor(Some(json!({
                    "io.containerd.image.name": tag.to_string(),
                    "org.opencontainers.image.ref.name": tag.tag().unwrap_or("latest"),
                }))));
                if let Some(top) = layers.last() {
                    repositories.entry(tag.familiar_name()).or_default().insert(
                        tag.tag().unwrap_or("latest").into(),
                        top.digest.hex().into(),
                    );
                }
            }
            docker_manifest.push(json!({
                "Config": format!("blobs/sha256/{}", image.id.hex()),
                "RepoTags": tags.iter().map(Reference::familiar).collect::<Vec<_>>(),
                "Layers": layers
                    .iter()
                    .map(|l| format!("blobs/sha256/{}", l.digest.hex()))
                    .collect::<Vec<_>>(),
            }));
        }
        let oci_index = json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": index_manifests,
        });

        // The archive is fsynced by its writer once complete; its writeback starts meanwhile.
        let mut writeback = match file {
            Some(file) => Some(
                EarlyWriteback::new(file, Writeback::Sync)
                    .map_err(StoreError::stream("write the image archive"))?,
            ),
            None => None,
        };
        let mut tar = tar::Builder::new(out);
        let fail = |e| StoreError::stream("write the image archive")(e);
        append_dir(&mut tar, "blobs/").map_err(fail)?;
        append_dir(&mut tar, "blobs/sha256/").map_err(fail)?;
        for (digest, (size, source)) in &blobs {
            let name = format!("blobs/sha256/{}", digest.hex());
            match source {
                Source::Store => {
                    let actual = self.blob_size(digest)?;
                    if actual != *size {
                        return Err(StoreError::SizeMismatch {
                            what: format!("blob {digest}"),
                            expected: *size,
                            actual,
                        });
                    }
                    // Verified on the way out: a corrupt blob is never passed on as good.
                    let actual = match (file, &mut writeback) {
                        (Some(file), Some(writeback)) if *size >= KERNEL_COPY_FROM => {
                            let h = header(&name, tar::EntryType::Regular, 0o644, *size)
                                .map_err(fail)?;
                            let w = tar.get_mut();
                            w.write_all(h.as_bytes())
                                .and_then(|()| w.flush())
                                .map_err(fail)?;
                            let actual = self.copy_blob(digest, *size, file, writeback)?;
                            let pad = (512 - *size % 512) % 512;
                            tar.get_mut()
                                .write_all(&[0; 512][..pad as usize])
                                .map_err(fail)?;
                            actual
                        }
                        _ => {
                            let mut blob = HashingReader::new(self.open_blob(digest)?);
                            append_file(&mut tar, &name, *size, &mut blob).map_err(fail)?;
                            blob.finish().1
                        }
                    };
                    if actual != *digest {
                        return Err(StoreError::DigestMismatch {
                            what: format!("stored blob {digest}"),
                            expected: digest.clone(),
                            actual,
                        });
                    }
                }
                Source::Temp(path) => {
                    let file = fs_err::File::open(path).map_err(StoreError::io("read", path))?;
                    append_file(&mut tar, &name, *size, file).map_err(fail)?;
                }
                Source::Bytes(bytes) => {
                    append_file(&mut tar, &name, *size, &bytes[..]).map_err(fail)?;
                }
            }
        }
        for (name, value) in [
            ("index.json", oci_index),
            ("manifest.json", Value::Array(docker_manifest)),
            ("oci-layout", json!({ "imageLayoutVersion": "1.0.0" })),
            (
                "repositories",
                serde_json::to_value(&repositories).expect("maps of strings serialise"),
            ),
        ] {
            let mut bytes = serde_json::to_vec(&value).expect("json values serialise");
            bytes.push(b'\n');
            append_file(&mut tar, name, bytes.len() as u64, &bytes[..]).map_err(fail)?;
        }
        tar.into_inner().and_then(|mut w| w.flush()).map_err(fail)?;
        if let Some(writeback) = writeback {
            writeback.finish();
        }
        Ok(())
    }
}

fn needs_transcode(
    store: &Store,
    layers: &[LayerDescriptor],
    want: Compression,
) -> Result<bool, StoreError> {
    for l in layers {
        if store.layer_compression(l)? != want {
            return Ok(true);
        }
    }
    Ok(false)
}

impl Store {
    /// The compression of a stored layer blob, from its magic bytes.
    fn layer_compression(&self, l: &LayerDescriptor) -> Result<Compression, StoreError> {
        let mut magic = [0u8; 4];
        let mut f = self.open_blob(&l.digest)?;
        let n = f
            .read(&mut magic)
            .map_err(StoreError::io("read", self.blob_path(&l.digest)))?;
        Ok(Compression::detect(&magic[..n]))
    }

    /// Recompresses a layer into a file in `dir`; the diff ID is checked on the way.
    fn transcode(
        &self,
        l: &LayerDescriptor,
        want: Compression,
        dir: &std::path::Path,
    ) -> Result<(LayerDescriptor, PathBuf), StoreError> {
        let what = format!("recompress layer {}", l.digest);
        let path = dir.join(l.digest.hex());
        let file = fs_err::File::create(&path).map_err(StoreError::io("create", &path))?;
        let blob = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
        let enc = Encoder::new(want, blob).map_err(StoreError::stream(what.clone()))?;
        let mut tar = HashingWriter::new(enc);
        let mut input =
            decompressed(self.open_blob(&l.digest)?).map_err(StoreError::stream(what.clone()))?;
        std::io::copy(&mut input, &mut tar).map_err(StoreError::stream(what.clone()))?;
        let (enc, diff_id, uncompressed) = tar.finish();
        if diff_id != l.diff_id {
            return Err(StoreError::DiffIdMismatch {
                layer: l.digest.clone(),
                expected: l.diff_id.clone(),
                actual: diff_id,
            });
        }
        let blob = enc.finish().map_err(StoreError::stream(what.clone()))?;
        let (buf, digest, size) = blob.finish();
        buf.into_inner()
            .map_err(|e| StoreError::io("write", &path)(e.into_error()))?;
        Ok((
            LayerDescriptor {
                media_type: want.media_type().to_owned(),
                digest,
                size,
                diff_id,
                uncompressed_size: Some(uncompressed),
            },
            path,
        ))
    }
}

/// Stored blobs from this size on are copied by the kernel into a file ([`Store::save_to_file`]).
const KERNEL_COPY_FROM: u64 = 1 << 20;

/// A blob's kernel copy goes in steps of this many bytes, so its writeback starts during it.
const COPY_STEP: u64 = 8 << 20;

impl Store {
    /// Copies the `size` bytes of blob `digest` to `out` at its position, in the kernel
    /// (`std::io::copy` between two files is `copy_file_range`, with its own fallbacks), while
    /// another thread reads and hashes the blob. Copied in steps, each told to `writeback`.
    /// Returns the digest that thread found.
    fn copy_blob(
        &self,
        digest: &Digest,
        size: u64,
        out: &std::fs::File,
        writeback: &mut EarlyWriteback,
    ) -> Result<Digest, StoreError> {
        let path = self.blob_path(digest);
        let blob = self.open_blob(digest)?;
        let hashed = self.open_blob(digest)?;
        let (copied, hashed) = std::thread::scope(|s| {
            let hasher = s.spawn(move || crate::digest::digest_reader(hashed.take(size)));
            // A whole blob is one segment; a pieced one's are the ranges of the files its
            // pieces are in, each copied in the kernel from its offset.
            let mut copied = 0;
            let mut result = Ok(());
            'segments: for seg in blob.segments(0, size) {
                let mut from = seg.file;
                if let Err(e) = from.seek(std::io::SeekFrom::Start(seg.offset)) {
                    result = Err(e);
                    break;
                }
                let mut from = from.take(seg.len);
                loop {
                    match std::io::copy(&mut (&mut from).take(COPY_STEP), &mut &*out) {
                        Ok(0) => break,
                        Ok(n) => {
                            copied += n;
                            writeback.wrote(n);
                        }
                        Err(e) => {
                            result = Err(e);
                            break 'segments;
                        }
                    }
                }
            }
            (result.map(|()| copied), hasher.join())
        });
        let copied = copied.map_err(StoreError::stream("write the image archive"))?;
        let (actual, _) = hashed
            .unwrap_or_else(|_| Err(std::io::Error::other("the hashing thread panicked")))
            .map_err(StoreError::io("read blob", &path))?;
        if copied != size {
            return Err(StoreError::SizeMismatch {
                what: format!("blob {digest}"),
                expected: size,
                actual: copied,
            });
        }
        Ok(actual)
    }
}

fn header(path: &str, kind: tar::EntryType, mode: u32, size: u64) -> std::io::Result<tar::Header> {
    let mut h = tar::Header::new_ustar();
    h.set_path(path)?;
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_cksum();
    Ok(h)
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, path: &str) -> std::io::Result<()> {
    let h = header(path, tar::EntryType::Directory, 0o755, 0)?;
    tar.append(&h, std::io::empty())
}

fn append_file<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    size: u64,
    body: impl Read,
) -> std::io::Result<()> {
    let h = header(path, tar::EntryType::Regular, 0o644, size)?;
    // Take: a blob that grew since we measured it cannot desynchronise the archive.
    tar.append(&h, body.take(size))
}
