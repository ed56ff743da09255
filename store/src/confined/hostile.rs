//! The shared hostile corpus (`../shared/research/hostile/make_hostile.py`) against the one
//! extractor directly: every `T*` tarball extracted with ADD's rules (into its case's
//! destination in a root that already has a base image's `/bin/cat` and `/tmp`) and with a
//! layer's (into an empty snapshot directory), and every layer of the `load/*.tar` archives as
//! a layer. Each case must end as the table below says; whatever the outcome, the canary
//! directory the inputs aim at stays untouched and its secret appears nowhere in the root.
//! End to end, the same corpus runs through the store (`store/tests/hostile.rs`) and through
//! ADD and COPY (`worker/tests/sandbox/hostile.rs`).

use super::corpus::{chain, files_containing, python, shared};
use super::{ArchiveKind, ConfinedRoot, ExtractError, ExtractOptions, Extracted, clean, extract};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Ok,
    Err,
    Either,
}

/// What each tarball must do, with ADD's rules and with a layer's.
fn expected(id: &str, kind: ArchiveKind) -> Want {
    use Want::*;
    let add = kind == ArchiveKind::Add;
    match &id[..3] {
        // `..` in a name: clamped below the destination by ADD, refused in a layer.
        "T01" => {
            if add {
                Ok
            } else {
                Err
            }
        }
        // Escapes that land inside the root (resolved in it or replaced, never followed).
        "T02" | "T03" | "T04" | "T05" | "T06" | "T07" | "T08" | "T13" | "T17" | "T18" | "T19"
        | "T20" | "T21" | "T22" | "T26" | "T30" => Ok,
        // `tmp -> <canary>`, then `tmp/x`: inside the root; a loop (ELOOP, as the kernel
        // says) when the canary lives under /tmp, so the link's target passes through itself.
        "T28" => Either,
        // Hard links to what is not in the archive, loops, truncated or corrupt archives,
        // and what is no tar at all (ADD copies those as files before extracting anything).
        "T09" | "T10" | "T11" | "T12" | "T14" | "T31" | "T32" | "T33" | "T34" | "T35" | "T36"
        | "T37" | "T38" => Err,
        // `.wh.` names: refused by ADD; in a layer `.wh..` is an invalid whiteout.
        "T15" => Err,
        // In a layer they are whiteouts (bin/cat deleted); ADD refuses them.
        "T16" => {
            if add {
                Err
            } else {
                Ok
            }
        }
        // Past ADD's unpack limit; a layer has none.
        "T29" => {
            if add {
                Err
            } else {
                Ok
            }
        }
        // Huge headers, 2000 levels, odd names: bounded, no panic, either outcome.
        _ => Either,
    }
}

/// A root as ADD sees it: a base image with `/bin/cat` and `/tmp`.
fn base_root(dir: &Path) {
    fs_err::create_dir_all(dir.join("bin")).unwrap();
    fs_err::create_dir_all(dir.join("tmp")).unwrap();
    fs_err::write(dir.join("bin/cat"), "cat").unwrap();
}

struct Corpus {
    _tmp: tempfile::TempDir,
    gen_dir: PathBuf,
    canary: PathBuf,
    secret: String,
    manifest: serde_json::Value,
    scratch: PathBuf,
}

impl Corpus {
    fn generate() -> Corpus {
        let tmp = tempfile::tempdir().unwrap();
        let canary = tmp.path().join("canary");
        let gen_dir = tmp.path().join("gen");
        let c = canary.to_str().unwrap();
        python(&["canary-setup", "--canary", c]);
        let g = gen_dir.to_str().unwrap();
        python(&[
            "gen",
            g,
            "--canary",
            c,
            "--bomb-mib",
            "4",
            "--many-files",
            "2000",
        ]);
        let secret = fs_err::read_to_string(canary.join("secret.txt")).unwrap();
        let secret = secret.trim().to_owned();
        assert!(secret.starts_with("HOSTILE-SECRET-"), "{secret}");
        let manifest =
            serde_json::from_str(&fs_err::read_to_string(gen_dir.join("manifest.json")).unwrap())
                .unwrap();
        let scratch = tmp.path().join("roots");
        fs_err::create_dir_all(&scratch).unwrap();
        Corpus {
            _tmp: tmp,
            gen_dir,
            canary,
            secret,
            manifest,
            scratch,
        }
    }

    /// Extracts `bytes` (maybe compressed) into a fresh root; checks the canary and the
    /// secret; returns the root and the outcome.
    fn run(
        &self,
        name: &str,
        bytes: &[u8],
        opts: &ExtractOptions,
        bad: &mut Vec<String>,
    ) -> (PathBuf, Result<Extracted, ExtractError>) {
        let dir = self.scratch.join(name);
        fs_err::create_dir_all(&dir).unwrap();
        if opts.kind == ArchiveKind::Add {
            base_root(&dir);
        }
        let root = ConfinedRoot::open(&dir).unwrap();
        let input = match crate::compression::decompressed(bytes) {
            Ok(input) => input,
            Err(e) => return (dir, Err(ExtractError::Read(e))),
        };
        let r = extract(&root, input, opts);
        python(&["canary-check", "--canary", self.canary.to_str().unwrap()]);
        let leaked = files_containing(&dir, &self.secret);
        if !leaked.is_empty() {
            bad.push(format!("{name}: the secret reached {leaked:?}"));
        }
        (dir, r)
    }
}

#[test]
fn shared_every_hostile_tarball_extracts_as_the_table_says_and_stays_inside() {
    let Some(_) = shared() else {
        eprintln!("not run: ../shared missing");
        return;
    };
    let corpus = Corpus::generate();
    let mut bad = Vec::new();
    let mut ran = 0;
    for case in corpus.manifest["cases"].as_array().unwrap() {
        if case["kind"] != "add-tar" {
            continue;
        }
        let id = case["id"].as_str().unwrap();
        let artifact = corpus.gen_dir.join(case["artifact"].as_str().unwrap());
        let bytes = fs_err::read(&artifact).unwrap();
        let dest = clean(Path::new(case["dest"].as_str().unwrap()));
        for (kind, opts) in [
            (
                ArchiveKind::Add,
                ExtractOptions::add(dest.clone(), None, 2 << 20),
            ),
            (ArchiveKind::Layer, ExtractOptions::layer()),
        ] {
            ran += 1;
            let name = format!("{id}-{kind:?}");
            let (dir, r) = corpus.run(&name, &bytes, &opts, &mut bad);
            let got = if r.is_ok() { Want::Ok } else { Want::Err };
            let want = expected(id, kind);
            if want != Want::Either && want != got {
                let why = r.as_ref().err().map(|e| chain(e));
                bad.push(format!("{name}: expected {want:?}, got {got:?} ({why:?})"));
                continue;
            }
            let at = if kind == ArchiveKind::Add {
                dir.join(super::join(&dest))
            } else {
                dir.clone()
            };
            if let Err(e) = check_case(id, kind, &at, &dir, &r) {
                bad.push(format!("{name}: {e}"));
            }
        }
    }
    assert_eq!(ran, 76, "every T* tarball, both ways");
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// What a case must have left behind, beyond staying inside.
fn check_case(
    id: &str,
    kind: ArchiveKind,
    at: &Path,
    root: &Path,
    r: &Result<Extracted, ExtractError>,
) -> Result<(), String> {
    let add = kind == ArchiveKind::Add;
    let meta = |p: &str| fs_err::symlink_metadata(at.join(p)).map_err(|e| e.to_string());
    match &id[..3] {
        "T06" => {
            let text = fs_err::read_to_string(at.join("victim")).map_err(|e| e.to_string())?;
            (text == "OVERWRITTEN-T06\n" && meta("victim")?.is_file())
                .then_some(())
                .ok_or("victim is not the new file".into())
        }
        "T07" => {
            let m = meta("vd")?;
            (m.is_dir() && m.mode() & 0o7777 == 0o777)
                .then_some(())
                .ok_or(format!("vd: {m:?}"))
        }
        "T15" if add => matches!(r, Err(ExtractError::Reserved(_)))
            .then_some(())
            .ok_or(format!("{:?}", r.as_ref().err())),
        "T16" if !add => {
            let m = fs_err::symlink_metadata(root.join("bin/cat")).map_err(|e| e.to_string())?;
            (m.file_type().is_char_device() && m.rdev() == 0)
                .then_some(())
                .ok_or("bin/cat is not a whiteout".into())
        }
        "T16" => (fs_err::read_to_string(root.join("bin/cat")).ok().as_deref() == Some("cat"))
            .then_some(())
            .ok_or("base bin/cat changed".into()),
        "T18" => {
            let suid = meta("suid")?;
            let big = meta("biguid")?;
            let sticky = meta("sticky")?;
            (suid.mode() & 0o7777 == 0o4755
                && (big.uid(), big.gid()) == (4294967294, 4294967294)
                && sticky.mode() & 0o7777 == 0o1777)
                .then_some(())
                .ok_or("modes or owners not kept".into())
        }
        "T19" => {
            let mut buf = [0u8; 8];
            let opaque =
                rustix::fs::getxattr(at.join("bin").as_path(), "trusted.overlay.opaque", &mut buf);
            (opaque.is_err() && at.join("bin/t19-marker").is_file())
                .then_some(())
                .ok_or("trusted.overlay.opaque kept".into())
        }
        "T20" => {
            let mut buf = [0u8; 64];
            let redirect =
                rustix::fs::getxattr(at.join("f").as_path(), "trusted.overlay.redirect", &mut buf);
            let user = rustix::fs::getxattr(at.join("f").as_path(), "user.hostile", &mut buf);
            (redirect.is_err() && user.is_ok())
                .then_some(())
                .ok_or("trusted.* kept or user.* dropped".into())
        }
        // PAX size wins, as in Go and GNU tar: 1024 bytes of outer-a, nothing smuggled.
        "T21" => (meta("outer-a.txt")?.len() == 1024 && !at.join("smuggled-a.txt").exists())
            .then_some(())
            .ok_or("PAX size not honoured".into()),
        "T22" => (meta("outer-b.txt")?.len() == 0 && at.join("smuggled-b.txt").exists())
            .then_some(())
            .ok_or("PAX size=0 not honoured".into()),
        "T29" if add => matches!(r, Err(ExtractError::TooBig(_)))
            .then_some(())
            .ok_or(format!("{:?}", r.as_ref().err())),
        "T28" => match r {
            Ok(_) => root
                .join("tmp")
                .symlink_metadata()
                .is_ok_and(|m| m.is_symlink())
                .then_some(())
                .ok_or("tmp is not the archive's symlink".into()),
            Err(e) => chain(e)
                .contains("os error 40")
                .then_some(())
                .ok_or(chain(e)),
        },
        "T30" => (r.as_ref().map(|d| d.entries).unwrap_or(0) >= 2000)
            .then_some(())
            .ok_or(format!("{r:?}")),
        _ => Ok(()),
    }
}

#[test]
fn shared_every_layer_of_the_hostile_load_archives_stays_inside() {
    let Some(_) = shared() else {
        eprintln!("not run: ../shared missing");
        return;
    };
    let corpus = Corpus::generate();
    let mut bad = Vec::new();
    let mut layers = 0;
    let mut archives: Vec<_> = fs_err::read_dir(corpus.gen_dir.join("load"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    archives.sort();
    for path in archives {
        let bytes = fs_err::read(&path).unwrap();
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let mut archive = tar::Archive::new(&bytes[..]);
        let Ok(entries) = archive.entries() else {
            continue;
        };
        for (i, entry) in entries.enumerate() {
            let Ok(mut entry) = entry else { break };
            let mut data = Vec::new();
            if !entry.header().entry_type().is_file()
                || std::io::Read::read_to_end(&mut entry, &mut data).is_err()
            {
                continue;
            }
            // A layer is any member that reads as a tar; configs and manifests do not.
            let is_tar = data.len() >= 512
                && tar::Header::from_byte_slice(&data[..512]).cksum().is_ok()
                && tar::Archive::new(&data[..])
                    .entries()
                    .is_ok_and(|mut e| e.next().is_some_and(|e| e.is_ok()));
            if !is_tar {
                continue;
            }
            layers += 1;
            let name = format!("{stem}-{i}");
            let (dir, r) = corpus.run(&name, &data, &ExtractOptions::layer(), &mut bad);
            if stem == "breakout-layer" {
                // `../` refused: nothing of it is left behind but what came before.
                if r.is_ok() {
                    bad.push(format!("{name}: a layer with ../ extracted"));
                }
                if dir.join("keep").exists() {
                    bad.push(format!("{name}: extraction went on after the refusal"));
                }
            }
        }
    }
    assert!(
        layers >= 10,
        "only {layers} layers found in the load archives"
    );
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
