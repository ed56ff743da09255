//! The shared hostile corpus (`../shared/research/hostile/make_hostile.py`) against the store:
//! every `T*` tarball imported as a layer and unpacked into a snapshot, every `load/*.tar`
//! loaded and unpacked. Whatever succeeds or fails, the canary directory the inputs aim at must
//! be untouched, the secret it holds must appear in no snapshot, and `check` must stay clean.

use strata_store::{ImportOptions, Reference, Store};

#[path = "../src/confined/corpus.rs"]
mod corpus;
use corpus::{chain, files_containing, generator, python};

#[test]
fn shared_hostile_corpus_never_escapes_and_leaves_the_store_sound() {
    let tmp = tempfile::tempdir().unwrap();
    let canary = tmp.path().join("canary");
    let gen_dir = tmp.path().join("gen");
    let canary_s = canary.to_str().unwrap();
    python(&["canary-setup", "--canary", canary_s]);
    python(&[
        "gen",
        gen_dir.to_str().unwrap(),
        "--canary",
        canary_s,
        "--bomb-mib",
        "16",
        "--many-files",
        "2000",
    ]);
    let store = Store::open(tmp.path().join("root")).unwrap();

    let mut outcomes = Vec::new();
    let mut tars: Vec<_> = fs_err::read_dir(gen_dir.join("tar"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    tars.sort();
    assert!(
        tars.len() >= 30,
        "the generator wrote {} tarballs",
        tars.len()
    );
    for path in &tars {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let case = name.split('-').next().unwrap().to_ascii_lowercase();
        let imported = store.import(
            fs_err::File::open(path).unwrap(),
            ImportOptions {
                tags: vec![Reference::parse(&format!("hostile:{case}")).unwrap()],
                ..ImportOptions::default()
            },
        );
        let outcome = match imported {
            Err(e) => format!("import refused: {}", chain(&e)),
            Ok(id) => {
                let image = store.image(id.as_str()).unwrap();
                match store.snapshots(&image) {
                    Ok(_) => "unpacked".to_owned(),
                    Err(e) => format!("unpack refused: {}", chain(&e)),
                }
            }
        };
        outcomes.push((name, outcome));
    }
    let mut loads: Vec<_> = fs_err::read_dir(gen_dir.join("load"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    loads.sort();
    for path in &loads {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let outcome = match store.load(fs_err::File::open(path).unwrap()) {
            Err(e) => format!("load refused: {}", chain(&e)),
            Ok(images) => {
                let mut o = "loaded".to_owned();
                for i in images {
                    let image = store.image(i.id.as_str()).unwrap();
                    if let Err(e) = store.snapshots(&image) {
                        o = format!("unpack refused: {}", chain(&e));
                    }
                }
                o
            }
        };
        outcomes.push((name, outcome));
    }
    let report: String = outcomes
        .iter()
        .map(|(n, o)| format!("{n}: {o}\n"))
        .collect();

    let check = generator(&["canary-check", "--canary", canary_s]);
    assert!(
        check.status.success(),
        "canary changed: {}\n{report}",
        String::from_utf8_lossy(&check.stdout)
    );
    let hits = files_containing(&tmp.path().join("root/snapshots"), "HOSTILE-SECRET-");
    assert!(hits.is_empty(), "secret copied into {hits:?}\n{report}");
    let sound = store.check().unwrap();
    assert!(sound.is_clean(), "{:?}\n{report}", sound.problems);

    // What must be refused, refused for the right reason.
    let outcome = |prefix: &str| {
        outcomes
            .iter()
            .find(|(n, _)| n.starts_with(prefix))
            .map(|(_, o)| o.as_str())
            .unwrap_or_else(|| panic!("no case {prefix}"))
    };
    for (case, expect) in [
        ("T01", "`..`"),
        ("T31", "truncated"),
        ("T32", "refused"),
        ("T36", "refused"),
        ("truncated", "truncated"),
        ("diffid-mismatch", "diff ID"),
        ("bad-diffid-syntax", "invalid digest"),
        ("oci-digest-traversal", "invalid digest"),
        ("oci-blob-digest-mismatch", "should have digest"),
        ("huge-manifest", "limit"),
        ("oci-index-json-huge", "limit"),
        ("manifest-path-traversal", "refused"),
        ("oci-ambiguous-manifest", "refused"),
        ("junk", "refused"),
        ("whiteout-abuse", "whiteout"),
        ("breakout-layer", "`..`"),
    ] {
        let o = outcome(case);
        assert!(o.contains(expect), "{case}: {o}\n{report}");
    }
}
