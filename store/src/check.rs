//! `system check`: re-reads everything the index promises and reports what is broken: tags
//! naming missing images, missing or corrupt manifests, configs and layers (every blob is
//! re-hashed and every layer's diff ID recomputed), and stray files where blobs live.

use crate::digest::{Digest, digest_reader};
use crate::error::StoreError;
use crate::image::{layer_descriptors, parse_config, parse_manifest};
use crate::pieces::BlobKind;
use crate::store::Store;
use std::collections::BTreeSet;

/// What `system check` found.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    /// Images checked.
    pub images: usize,
    /// Blobs re-hashed.
    pub blobs: usize,
    /// Containers checked.
    pub containers: usize,
    /// One line per problem; empty when the store is sound.
    pub problems: Vec<String>,
}

impl CheckReport {
    /// Whether nothing is broken.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Store {
    /// Verifies the whole store. Problems are reported, not returned as errors; an error means
    /// the check itself could not run.
    pub fn check(&self) -> Result<CheckReport, StoreError> {
        let _lease = self.lease()?;
        let mut report = CheckReport::default();
        let index = match self.read_index() {
            Ok(i) => i,
            Err(e) => {
                report.problems.push(format!("image index: {}", chain(&e)));
                return Ok(report);
            }
        };
        // Every blob, re-hashed: a pieced one read through its pieces (its table checked,
        // every whole blob it names there and long enough).
        let mut good = BTreeSet::new();
        for (kind, entry) in self.blob_files()? {
            let dir = kind.dir();
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(digest) = Digest::from_hex(&name) else {
                report
                    .problems
                    .push(format!("{dir}/{name}: not named by a digest"));
                continue;
            };
            report.blobs += 1;
            let opened = match kind {
                BlobKind::Whole => fs_err::File::open(entry.path())
                    .map(|f| Box::new(f) as Box<dyn std::io::Read>)
                    .map_err(StoreError::io("open blob", entry.path())),
                BlobKind::Pieced => self
                    .open_pieced(&digest)
                    .map(|r| Box::new(r) as Box<dyn std::io::Read>),
            };
            let what = if kind == BlobKind::Pieced {
                "pieced blob"
            } else {
                "blob"
            };
            match opened
                .and_then(|f| digest_reader(f).map_err(StoreError::io("read", entry.path())))
            {
                Ok((actual, _)) if actual == digest => {
                    good.insert(digest);
                }
                Ok((actual, _)) => report
                    .problems
                    .push(format!("{what} {digest}: content has digest {actual}")),
                Err(e) => report
                    .problems
                    .push(format!("{what} {digest}: {}", chain(&e))),
            }
        }
        for (tag, id) in &index.tags {
            if !index.images.contains_key(id) {
                report.problems.push(format!(
                    "tag {tag}: names image {id}, which is not in the store"
                ));
            }
        }
        for (id, record) in &index.images {
            report.images += 1;
            let mut problem =
                |p: String| report.problems.push(format!("image {}: {p}", id.short()));
            if !good.contains(&record.manifest) {
                problem(format!(
                    "manifest {} is missing or corrupt",
                    record.manifest
                ));
                continue;
            }
            if !good.contains(id) {
                problem(format!("config {id} is missing or corrupt"));
                continue;
            }
            let what = format!("manifest {}", record.manifest);
            let parsed = self
                .read_blob(&record.manifest)
                .and_then(|b| parse_manifest(&b, &what));
            let manifest = match parsed {
                Ok(m) => m,
                Err(e) => {
                    problem(chain(&e));
                    continue;
                }
            };
            if Digest::try_from(manifest.config().digest()).ok().as_ref() != Some(id) {
                problem(format!("{what} does not point at config {id}"));
            }
            let config = match self
                .read_blob(id)
                .and_then(|b| parse_config(&b, &format!("config {id}")))
            {
                Ok(c) => c,
                Err(e) => {
                    problem(chain(&e));
                    continue;
                }
            };
            let layers = match layer_descriptors(&manifest, &config, &record.layer_sizes, &what) {
                Ok(l) => l,
                Err(e) => {
                    problem(chain(&e));
                    continue;
                }
            };
            for l in &layers {
                if !good.contains(&l.digest) {
                    problem(format!("layer {} is missing or corrupt", l.digest));
                    continue;
                }
                match self.blob_size(&l.digest) {
                    Ok(size) if size == l.size => {}
                    Ok(size) => problem(format!(
                        "layer {} is {size} bytes, the manifest says {}",
                        l.digest, l.size
                    )),
                    Err(e) => problem(chain(&e)),
                }
                let diff = self.open_blob(&l.digest).and_then(|f| {
                    crate::compression::decompressed(f)
                        .and_then(digest_reader)
                        .map_err(StoreError::stream(format!("decompress layer {}", l.digest)))
                });
                match diff {
                    Ok((actual, _)) if actual == l.diff_id => {}
                    Ok((actual, _)) => problem(format!(
                        "layer {}: uncompressed digest {actual}, the config says {}",
                        l.digest, l.diff_id
                    )),
                    Err(e) => problem(chain(&e)),
                }
            }
        }
        report.containers = self.check_containers(&mut report.problems)?;
        Ok(report)
    }
}

/// An error and its causes on one line.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
