//! `save`: images as one tarball that is at the same time an OCI image layout (`oci-layout`,
//! `index.json`, `blobs/sha256/…`) and a docker archive (`manifest.json`, `repositories`,
//! pointing into the same blobs), so `docker load`, skopeo, umoci and `strata load` all read it.
//! The bytes depend only on the images: sorted members, zero times and owners, and JSON written
//! with sorted keys (oci-spec's annotation maps are hash maps, so the index is written here).

use crate::digest::Digest;
use crate::error::StoreError;
use crate::image::{Image, OCI_INDEX};
use crate::reference::Reference;
use crate::store::Store;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{Read, Write};

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

        let mut blobs: BTreeMap<Digest, u64> = BTreeMap::new();
        let mut index_manifests = Vec::new();
        let mut docker_manifest = Vec::new();
        let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for id in &order {
            let (image, tags) = &images[id];
            let manifest_size = self.blob_size(&image.manifest_digest)?;
            blobs.insert(image.manifest_digest.clone(), manifest_size);
            blobs.insert(image.id.clone(), image.config_bytes.len() as u64);
            for l in &image.layers {
                blobs.insert(l.digest.clone(), l.size);
            }
            let descriptor = |annotations: Option<Value>| {
                let mut d = json!({
                    "mediaType": image.manifest_media_type,
                    "digest": image.manifest_digest.as_str(),
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
                if let Some(top) = image.layers.last() {
                    repositories.entry(tag.familiar_name()).or_default().insert(
                        tag.tag().unwrap_or("latest").into(),
                        top.digest.hex().into(),
                    );
                }
            }
            docker_manifest.push(json!({
                "Config": format!("blobs/sha256/{}", image.id.hex()),
                "RepoTags": tags.iter().map(Reference::familiar).collect::<Vec<_>>(),
                "Layers": image
                    .layers
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

        let mut tar = tar::Builder::new(out);
        let fail = |e| StoreError::stream("write the image archive")(e);
        append_dir(&mut tar, "blobs/").map_err(fail)?;
        append_dir(&mut tar, "blobs/sha256/").map_err(fail)?;
        for (digest, size) in &blobs {
            let actual = self.blob_size(digest)?;
            if actual != *size {
                return Err(StoreError::SizeMismatch {
                    what: format!("blob {digest}"),
                    expected: *size,
                    actual,
                });
            }
            let file = self.open_blob(digest)?;
            append_file(
                &mut tar,
                &format!("blobs/sha256/{}", digest.hex()),
                *size,
                file,
            )
            .map_err(fail)?;
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
        Ok(())
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
