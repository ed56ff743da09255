//! COPY, ADD, heredoc files and WORKDIR against BuildKit's semantics (the conformance cases
//! in shared/conformance/diff), read back from the new layer.

use crate::common::*;
use libtest_mimic::Trial;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use strata_graph::pattern::DirVisit;
use strata_graph::{Chown, FileAction, FileOp};
use strata_worker::{DiffOptions, FileError, FileRequest, FileSource, Previous};

pub fn tests() -> Vec<Trial> {
    vec![
        trial("copy_file_to_dir_semantics", copy_file_to_dir_semantics),
        trial("copy_dir_copies_contents", copy_dir_copies_contents),
        trial(
            "copy_creates_missing_parents_0755_root",
            copy_creates_missing_parents_0755_root,
        ),
        trial("copy_chmod_and_chown", copy_chmod_and_chown),
        trial(
            "copy_context_modes_owner_reset",
            copy_context_modes_owner_reset,
        ),
        trial("copy_multi_source_and_globs", copy_multi_source_and_globs),
        trial(
            "copy_from_stage_keeps_owner_and_links",
            copy_from_stage_keeps_owner_and_links,
        ),
        trial(
            "copy_exclude_parents_and_dockerignore",
            copy_exclude_parents_and_dockerignore,
        ),
        trial(
            "copy_parents_excludes_match_below_the_pivot",
            copy_parents_excludes_match_below_the_pivot,
        ),
        trial(
            "copy_exclude_exceptions_copy_what_the_cache_counts",
            copy_exclude_exceptions_copy_what_the_cache_counts,
        ),
        trial(
            "copy_exclude_is_relative_to_each_source",
            copy_exclude_is_relative_to_each_source,
        ),
        trial(
            "copy_globs_never_walk_through_symlinks",
            copy_globs_never_walk_through_symlinks,
        ),
        trial("copy_errors", copy_errors),
        trial(
            "shared_add_tar_extracts_keeping_archive_metadata",
            shared_add_tar_extracts_keeping_archive_metadata,
        ),
        trial(
            "shared_add_tar_chown_applies_to_entries",
            shared_add_tar_chown_applies_to_entries,
        ),
        trial(
            "shared_add_compressed_archives_by_content",
            shared_add_compressed_archives_by_content,
        ),
        trial("heredoc_and_workdir", heredoc_and_workdir),
        trial(
            "dest_symlinks_in_the_image_stay_inside",
            dest_symlinks_in_the_image_stay_inside,
        ),
        trial(
            "context_symlinks_never_escape",
            context_symlinks_never_escape,
        ),
        trial("file_op_leaves_no_mounts", file_op_leaves_no_mounts),
        trial(
            "add_url_downloads_without_extracting",
            add_url_downloads_without_extracting,
        ),
        trial(
            "add_unpack_true_extracts_a_downloaded_archive_and_keeps_other_files",
            add_unpack_true_extracts_a_downloaded_archive_and_keeps_other_files,
        ),
        trial(
            "incremental_copy_links_unchanged_files_and_makes_the_same_layer",
            incremental_copy_links_unchanged_files_and_makes_the_same_layer,
        ),
        trial(
            "incremental_copy_onto_one_path_twice_makes_the_same_layer",
            incremental_copy_onto_one_path_twice_makes_the_same_layer,
        ),
        trial(
            "a_copy_tells_the_layer_writer_what_it_wrote_and_the_bytes_are_the_walks",
            a_copy_tells_the_layer_writer_what_it_wrote_and_the_bytes_are_the_walks,
        ),
        trial(
            "a_layer_told_wrong_is_walked_again_and_a_failing_store_is_not_retried",
            a_layer_told_wrong_is_walked_again_and_a_failing_store_is_not_retried,
        ),
    ]
}

pub fn copy(from: usize, sources: &[&str], dest: &str) -> FileAction {
    FileAction::Copy {
        from,
        sources: sources.iter().map(|s| s.to_string()).collect(),
        dest: dest.into(),
        dest_is_dir: dest.ends_with('/') || sources.len() > 1,
        chown: None,
        chmod: None,
        link: false,
        parents: false,
        exclude: vec![],
        unpack: false,
    }
}

pub fn add(from: usize, sources: &[&str], dest: &str) -> FileAction {
    let mut a = copy(from, sources, dest);
    if let FileAction::Copy { unpack, .. } = &mut a {
        *unpack = true;
    }
    a
}

pub fn with_chown(mut a: FileAction, user: &str, group: Option<&str>) -> FileAction {
    if let FileAction::Copy { chown, .. } = &mut a {
        *chown = Some(Chown {
            user: user.into(),
            group: group.map(Into::into),
        });
    }
    a
}

pub fn with_chmod(mut a: FileAction, mode: &str) -> FileAction {
    if let FileAction::Copy { chmod, .. } = &mut a {
        *chmod = Some(mode.into());
    }
    a
}

/// A context directory.
pub fn context(env: &Env, name: &str) -> PathBuf {
    let p = env.dir.path().join(name);
    fs_err::create_dir_all(&p).unwrap();
    p
}

pub fn put(dir: &Path, rel: &str, contents: &str, mode: u32) {
    let p = dir.join(rel);
    fs_err::create_dir_all(p.parent().unwrap()).unwrap();
    fs_err::write(&p, contents).unwrap();
    fs_err::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Applies `actions` on `lowers` with the context `ctx` as input 1; returns the new layer.
pub fn apply(
    env: &Env,
    lowers: Vec<PathBuf>,
    actions: Vec<FileAction>,
    inputs: Vec<Option<FileSource>>,
) -> Result<PathBuf, FileError> {
    let upper = env.upper();
    env.worker.apply_file_op(FileRequest {
        op: FileOp { actions },
        lowers,
        upper: upper.clone(),
        inputs,
        git_auth: Default::default(),
        previous: None,
    })?;
    Ok(upper)
}

pub fn ctx_input(dir: &Path) -> Vec<Option<FileSource>> {
    vec![
        None,
        Some(FileSource::Context {
            dir: dir.to_owned(),
            exclude: None,
        }),
    ]
}

/// (type, mode, uid, gid) of a path in a layer.
pub fn meta(layer: &Path, rel: &str) -> Result<(char, u32, u32, u32), String> {
    let m = fs_err::symlink_metadata(layer.join(rel.trim_start_matches('/')))
        .map_err(|e| e.to_string())?;
    let t = if m.is_dir() {
        'd'
    } else if m.file_type().is_symlink() {
        'l'
    } else if m.is_file() {
        'f'
    } else {
        '?'
    };
    Ok((t, m.mode() & 0o7777, m.uid(), m.gid()))
}

pub fn text(layer: &Path, rel: &str) -> String {
    fs_err::read_to_string(layer.join(rel.trim_start_matches('/')))
        .unwrap_or_else(|e| format!("<{e}>"))
}

fn err(e: FileError) -> libtest_mimic::Failed {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(x) = src {
        s.push_str(&format!(": {x}"));
        src = x.source();
    }
    s.into()
}

fn copy_file_to_dir_semantics() -> TestResult {
    let env = Env::new();
    let ctx = context(&env, "ctx");
    put(&ctx, "a.txt", "file a\n", 0o644);
    put(&ctx, "b.txt", "file b\n", 0o644);
    let pre = env.upper();
    fs_err::create_dir_all(pre.join("existing")).unwrap();
    let l = apply(
        &env,
        vec![pre, env.base.clone()],
        vec![
            copy(1, &["a.txt"], "/dest/"),
            copy(1, &["a.txt"], "/newname"),
            copy(1, &["a.txt"], "/existing"),
            copy(1, &["a.txt"], "/work/"),
            copy(1, &["b.txt"], "/work/renamed.txt"),
            copy(1, &["b.txt"], "/work/sub/"),
        ],
        ctx_input(&ctx),
    )
    .map_err(err)?;
    ensure_eq(meta(&l, "/dest")?, ('d', 0o755, 0, 0), "/dest")?;
    ensure_eq(text(&l, "/dest/a.txt"), "file a\n".into(), "/dest/a.txt")?;
    ensure_eq(
        meta(&l, "/newname")?,
        ('f', 0o644, 0, 0),
        "/newname is a file",
    )?;
    ensure_eq(
        text(&l, "/existing/a.txt"),
        "file a\n".into(),
        "into existing dir",
    )?;
    ensure_eq(text(&l, "/work/renamed.txt"), "file b\n".into(), "renamed")?;
    ensure_eq(text(&l, "/work/sub/b.txt"), "file b\n".into(), "sub/")
}

fn copy_dir_copies_contents() -> TestResult {
    let env = Env::new();
    let ctx = context(&env, "ctx");
    put(&ctx, "dir/one.txt", "1\n", 0o644);
    put(&ctx, "dir/nested/two.txt", "2\n", 0o644);
    put(&ctx, "top.txt", "top\n", 0o644);
    fs_err::create_dir_all(ctx.join("empty1")).unwrap();
    let pre = env.upper();
    put(&pre, "out4/existing/keep.txt", "keep\n", 0o644);
    let l = apply(
        &env,
        vec![pre, env.base.clone()],
        vec![
            copy(1, &["dir"], "/out1"),
            copy(1, &["dir/"], "/out2/"),
            copy(1, &["dir/nested"], "/out3/"),
            copy(1, &["."], "/all/"),
            copy(1, &["dir"], "/out4/existing"),
            copy(1, &["empty1"], "/e1"),
        ],
        ctx_input(&ctx),
    )
    .map_err(err)?;
    ensure_eq(text(&l, "/out1/one.txt"), "1\n".into(), "out1")?;
    ensure_eq(
        text(&l, "/out1/nested/two.txt"),
        "2\n".into(),
        "out1 nested",
    )?;
    ensure(!l.join("out1/dir").exists(), "the dir itself is not copied")?;
    ensure_eq(text(&l, "/out2/one.txt"), "1\n".into(), "out2")?;
    ensure_eq(text(&l, "/out3/two.txt"), "2\n".into(), "out3")?;
    ensure_eq(text(&l, "/all/top.txt"), "top\n".into(), "all")?;
    ensure_eq(
        text(&l, "/all/dir/nested/two.txt"),
        "2\n".into(),
        "all nested",
    )?;
    ensure_eq(meta(&l, "/all/empty1")?.0, 'd', "empty dir kept")?;
    ensure_eq(meta(&l, "/e1")?.0, 'd', "empty dir copied by name")?;
    ensure_eq(text(&l, "/out4/existing/one.txt"), "1\n".into(), "merged")?;
    ensure(
        fs_err::symlink_metadata(l.join("out4/existing/keep.txt")).is_err(),
        "existing file untouched (no whiteout)",
    )
}

fn copy_creates_missing_parents_0755_root() -> TestResult {
    let env = Env::new();
    let ctx = context(&env, "ctx");
    put(&ctx, "f.txt", "f\n", 0o644);
    put(&ctx, "d/inner.txt", "inner\n", 0o644);
    let l = apply(
        &env,
        vec![env.base.clone()],
        vec![
            copy(1, &["f.txt"], "/a/b/c/"),
            copy(1, &["f.txt"], "/x/y/z"),
            copy(1, &["d"], "/p/q/"),
            copy(1, &["f.txt"], "/w/deep/er/"),
        ],
        ctx_input(&ctx),
    )
    .map_err(err)?;
    for d in [
        "/a",
        "/a/b",
        "/a/b/c",
        "/x",
        "/x/y",
        "/p",
        "/p/q",
        "/w/deep/er",
    ] {
        ensure_eq(meta(&l, d)?, ('d', 0o755, 0, 0), d)?;
    }
    ensure_eq(meta(&l, "/x/y/z")?, ('f', 0o644, 0, 0), "/x/y/z")?;
    ensure_eq(
        text(&l, "/p/q/inner.txt"),
        "inner\n".into(),
        "/p/q/inner.txt",
    )
}

fn copy_chmod_and_chown() -> TestResult {
    let env = Env::new();
    let ctx = context(&env, "ctx");
    put(&ctx, "f.txt", "chmod me\n", 0o644);
    put(&ctx, "d/x", "x\n", 0o644);
    put(&ctx, "d/sub/y", "y\n", 0o644);
    let l = apply(
        &env,
        vec![env.base.clone()],
        vec![
            with_chmod(copy(1, &["f.txt"], "/m/exec"), "0755"),
            with_chmod(copy(1, &["f.txt"], "/m/private"), "600"),
            with_chmod(copy(1, &["d"], "/m/dir/"), "0750"),
            with_chmod(
                with_chown(copy(1, &["f.txt"], "/m/both"), "app", Some("app")),
                "640",
            ),
            with_chmod(copy(1, &["f.txt"], "/s/setuid"), "4755"),
            with_chmod(copy(1, &["f.txt"], "/s/both"), "6750"),
            with_chmod(copy(1, &["d"], "/s/sticky/"), "1777"),
            with_chmod(
                with_chown(copy(1, &["f.txt"], "/s/owned-setuid"), "app", Some("staff")),
                "4750",
            ),
            with_chown(copy(1, &["f.txt"], "/n/ten"), "10", None),
        ],
        ctx_input(&ctx),
    )
    .map_err(err)?;
    ensure_eq(meta(&l, "/m/exec")?, ('f', 0o755, 0, 0), "exec")?;
    ensure_eq(meta(&l, "/m/private")?, ('f', 0o600, 0, 0), "private")?;
    ensure_eq(
        meta(&l, "/m/dir")?,
        ('d', 0o755, 0, 0),
        "created dest dir keeps 0755",
    )?;
    ensure_eq(
        meta(&l, "/m/dir/x")?,
        ('f', 0o750, 0, 0),
        "file in dir copy",
    )?;
    ensure_eq(
        meta(&l, "/m/dir/sub")?,
        ('d', 0o750, 0, 0),
        "subdir in dir copy",
    )?;
    ensure_eq(
        meta(&l, "/m/both")?,
        ('f', 0o640, 1000, 1000),
        "chown+chmod",
    )?;
    ensure_eq(meta(&l, "/s/setuid")?, ('f', 0o4755, 0, 0), "setuid kept")?;
    ensure_eq(meta(&l, "/s/both")?, ('f', 0o6750, 0, 0), "setuid+setgid")?;
    ensure_eq(
        meta(&l, "/s/sticky")?,
        ('d', 0o755, 0, 0),
        "sticky dest dir",
    )?;
    ensure_eq(meta(&l, "/s/sticky/x")?, ('f', 0o1777, 0, 0), "sticky file")?;
    ensure_eq(
        meta(&l, "/s/owned-setuid")?,
        ('f', 0o4750, 1000, 50),
        "setuid survives chown",
    )?;
    ensure_eq(meta(&l, "/n/ten")?, ('f', 0o644, 10, 10), "numeric chown")
}

fn copy_context_modes_owner_reset() -> TestResult {
    let env = Env::new();
    let ctx = context(&env, "ctx");
    put(&ctx, "secret.txt", "secret\n", 0o600);
    put(&ctx, "suid", "suid\n", 0o4755);
    put(&ctx, "owned.txt", "owned\n", 0o644);
    std::os::unix::fs::chown(ctx.join("owned.txt"), Some(1000), Some(1000)).unwrap();
    fs_err::create_dir_all(ctx.join("stickydir")).unwrap();
    fs_err::set_permissions(
        ctx.join("stickydir"),
        std::fs::Permissions::from_mode(0o1777),
    )
    .unwrap();
    let l = apply(
        &env,
        vec![env.base.clone()],
        vec![copy(1, &["."], "/modes/")],
        ctx_input(&ctx),
    )
    .map_err(err)?;
    ensure_eq(meta(&l, "/modes/secret.txt")?, ('f', 0o600, 0, 0), "0600")?;
    ensure_eq(meta(&l, "/modes/suid")?, ('f', 0o4755, 0, 0), "setuid")?;
    ensure_eq(
        meta(&l, "/modes/owned.txt")?,
        ('f', 0o644, 0, 0),
        "owner reset to 0:0",
    )?;
    ensure_eq(
        meta(&l, "/modes/stickydir")?,
        ('d', 0o1777, 0, 0),
        "sticky dir",
    )
}

fn copy_multi_source_and_globs() -> TestResult {
    let env = Env::new();
    let ctx = context(&env, "ctx");
    put(&ctx, "a", "a\n", 0o644);
    put(&ctx, "b", "b\n", 0o644);
    put(&ctx, "dir/c", "c\n", 0o644);
    put(&ctx, "file one.txt", "1\n", 0o644);
    put(&ctx, "src/x.go", "x\n", 0o644);
    put(&ctx, "src/y.go", "y\n", 0o644);
    put(&ctx, "src/z.txt", "z\n", 0o644);
    let l = apply(
        &env,
        vec![env.base.clone()],
        vec![
            copy(1, &["a", "b", "dir"], "/multi/"),
            copy(1, &["file one.txt"], "/dest with space/"),
            copy(1, &["src/*.go"], "/go/"),
            copy(1, &["[ab]"], "/class/"),
        ],
        ctx_input(&ctx),
    )
    .map_err(err)?;
    for (p, t) in [
        ("/multi/a", "a\n"),
        ("/multi/b", "b\n"),
        ("/multi/c", "c\n"),
        ("/dest with space/file one.txt", "1\n"),
        ("/go/x.go", "x\n"),
        ("/go/y.go", "y\n"),
        ("/class/a", "a\n"),
        ("/class/b", "b\n"),
    ] {
        ensure_eq(text(&l, p), t.to_string(), p)?;
    }
    ensure(!l.join("go/z.txt").exists(), "glob does not match z.txt")
}

fn copy_from_stage_keeps_owner_and_links() -> TestResult {
    let env = Env::new();
    let stage = env.upper();
    put(&stage, "app/bin/tool", "tool\n", 0o755);
    std::os::unix::fs::chown(stage.join("app/bin/tool"), Some(1000), Some(50)).unwrap();
    fs_err::hard_link(stage.join("app/bin/tool"), stage.join("app/bin/tool2")).unwrap();
    symlink("tool", stage.join("app/bin/link")).unwrap();
    let l = apply(
        &env,
        vec![env.base.clone()],
        vec![copy(1, &["/app"], "/opt/app")],
        vec![
            None,
            Some(FileSource::Layers(vec![stage, env.base.clone()])),
        ],
    )
    .map_err(err)?;
    ensure_eq(
        meta(&l, "/opt/app/bin/tool")?,
        ('f', 0o755, 1000, 50),
        "owner kept from a stage",
    )?;
    ensure_eq(
        meta(&l, "/opt/app/bin/link")?.0,
        'l',
        "symlink copied as symlink",
    )?;
    ensure_eq(
        fs_err::read_link(l.join("opt/app/bin/link")).unwrap(),
        PathBuf::from("tool"),
        "link target",
    )?;
    let (a, b) = (
        fs_err::metadata(l.join("opt/app/bin/tool")).unwrap(),
        fs_err::metadata(l.join("opt/app/bin/tool2")).unwrap(),
    );
    ensure_eq(a.ino(), b.ino(), "hard link kept")
}

/// `COPY --parents --exclude=...`: BuildKit copies the `/./` pivot directory with the rest
/// of the source as an include pattern, so excludes are matched below the pivot (the path
/// kept under the destination), not below each source.
fn copy_parents_excludes_match_below_the_pivot() -> TestResult {
    let env = Env::new();
    let ctx = context(&env, "ctx");
    put(&ctx, "x/a/keep.txt", "k\n", 0o644);
    put(&ctx, "x/a/drop.log", "d\n", 0o644);
    put(&ctx, "x/a/sub/deep.txt", "s\n", 0o644);
    put(&ctx, "x/b/other.txt", "o\n", 0o644);
    let parents = |sources: &[&str], dest: &str, excludes: &[&str]| {
        let mut a = copy(1, sources, dest);
        if let FileAction::Copy {
            parents, exclude, ..
        } = &mut a
        {
            *parents = true;
            *exclude = excludes.iter().map(|e| e.to_string()).collect();
        }
        a
    };
    let l = apply(
        &env,
        vec![env.base.clone()],
        vec![
            parents(&["x/./a"], "/one/", &["a/*.log", "a/sub"]),
            parents(&["x/./*"], "/two/", &["*/sub", "b"]),
            parents(&["x/a/keep.txt"], "/three/", &[]),
        ],
        ctx_input(&ctx),
    )
    .map_err(err)?;
    ensure_eq(
        tree_of(&l, "one"),
        vec!["a/".to_string(), "a/keep.txt".into()],
        "excludes written below the pivot match",
    )?;
    ensure_eq(
        tree_of(&l, "two"),
        vec!["a/".to_string(), "a/drop.log".into(), "a/keep.txt".into()],
        "a matched source is excluded by its path below the pivot",
    )?;
    ensure_eq(
        tree_of(&l, "three"),
        vec!["x/".to_string(), "x/a/".into(), "x/a/keep.txt".into()],
        "without a pivot, the whole path is kept",
    )
}

fn copy_exclude_parents_and_dockerignore() -> TestResult {
    let env = Env::new();
    let ctx = context(&env, "ctx");
    put(&ctx, "a/b/keep.txt", "k\n", 0o644);
    put(&ctx, "a/b/skip.log", "s\n", 0o644);
    put(&ctx, "secret.txt", "CTX-IGNORED-SECRET\n", 0o644);
    symlink("secret.txt", ctx.join("alias")).unwrap();
    let mut ex = copy(1, &["a"], "/ex/");
    if let FileAction::Copy { exclude, .. } = &mut ex {
        exclude.push("**/*.log".into());
    }
    let mut par = copy(1, &["a/b/keep.txt"], "/par/");
    if let FileAction::Copy { parents, .. } = &mut par {
        *parents = true;
    }
    let l = apply(&env, vec![env.base.clone()], vec![ex, par], ctx_input(&ctx)).map_err(err)?;
    ensure_eq(text(&l, "/ex/b/keep.txt"), "k\n".into(), "kept")?;
    ensure(!l.join("ex/b/skip.log").exists(), "--exclude")?;
    ensure_eq(text(&l, "/par/a/b/keep.txt"), "k\n".into(), "--parents")?;
    // .dockerignore (the exclude callback): not copied, also not through a symlink alias.
    let exclude: strata_worker::ExcludeFn = std::sync::Arc::new(|p: &Path, _| {
        if p == Path::new("secret.txt") {
            DirVisit::Skip
        } else {
            DirVisit::Include
        }
    });
    let inputs = vec![
        None,
        Some(FileSource::Context {
            dir: ctx.clone(),
            exclude: Some(exclude),
        }),
    ];
    let l = apply(
        &env,
        vec![env.base.clone()],
        vec![copy(1, &["."], "/ctx/")],
        inputs.clone(),
    )
    .map_err(err)?;
    ensure(
        !l.join("ctx/secret.txt").exists(),
        "ignored file not copied",
    )?;
    ensure_eq(
        meta(&l, "/ctx/alias")?.0,
        'l',
        "the alias is copied as a (dangling) link",
    )?;
    let r = apply(
        &env,
        vec![env.base.clone()],
        vec![copy(1, &["alias"], "/out/alias")],
        inputs.clone(),
    );
    ensure(
        matches!(r, Err(FileError::NotFound { .. })),
        format!("COPY alias of an ignored file: {r:?}"),
    )?;
    let r = apply(
        &env,
        vec![env.base.clone()],
        vec![copy(1, &["secret.txt"], "/out/")],
        inputs,
    );
    ensure(
        matches!(r, Err(FileError::NotFound { .. })),
        format!("COPY of an ignored file: {r:?}"),
    )
}

/// Every path under `dir` of a layer, relative to it, sorted, with `/` after directories.
fn tree_of(layer: &Path, dir: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        for entry in fs_err::read_dir(layer.join(dir).join(&rel)).unwrap() {
            let entry = entry.unwrap();
            let rel = rel.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                out.push(format!("{}/", rel.display()));
                todo.push(rel);
            } else {
                out.push(rel.display().to_string());
            }
        }
    }
    out.sort();
    out
}

fn with_excludes(mut a: FileAction, patterns: &[&str]) -> FileAction {
    if let FileAction::Copy { exclude, .. } = &mut a {
        *exclude = patterns.iter().map(|p| p.to_string()).collect();
    }
    a
}

/// `COPY --exclude` with `!` exceptions writes exactly what the cache's selection counts for
/// the same tree and patterns (`cache/src/selection.rs`,
/// `exclude_exceptions_select_what_the_copy_writes`). Before both used one matcher, the copy
/// ignored `!` (and left out `keep.log`) while the cache key covered it.
fn copy_exclude_exceptions_copy_what_the_cache_counts() -> TestResult {
    let env = Env::new();
    let ctx = context(&env, "ctx");
    for f in [
        "app/main.c",
        "app/a.log",
        "app/keep.log",
        "app/sub/b.log",
        "app/sub/keep.log",
        "app/tmp/x.txt",
        "app/cache/keep.log",
        "app/cache/junk.bin",
    ] {
        put(&ctx, f, f, 0o644);
    }
    fs_err::set_permissions(
        ctx.join("app/cache"),
        std::fs::Permissions::from_mode(0o750),
    )
    .unwrap();
    let patterns = [
        "**/*.log",
        "!**/keep.log",
        "tmp",
        "!tmp/none",
        "cache",
        "!cache/keep.log",
    ];
    let l = apply(
        &env,
        vec![env.base.clone()],
        vec![with_excludes(copy(1, &["app"], "/dst/"), &patterns)],
        ctx_input(&ctx),
    )
    .map_err(err)?;
    // The cache selects app, app/cache, app/cache/keep.log, app/keep.log, app/main.c,
    // app/sub, app/sub/keep.log; COPY copies the contents of app.
    ensure_eq(
        tree_of(&l, "dst"),
        vec![
            "cache/".to_string(),
            "cache/keep.log".into(),
            "keep.log".into(),
            "main.c".into(),
            "sub/".into(),
            "sub/keep.log".into(),
        ],
        "copied tree",
    )?;
    ensure_eq(
        text(&l, "/dst/cache/keep.log"),
        "app/cache/keep.log".into(),
        "re-included file",
    )?;
    // The excluded directory made as the parent of what came back keeps its own mode.
    ensure_eq(meta(&l, "/dst/cache")?.1, 0o750, "late directory's mode")?;
    // A bad pattern is an error naming it, not a pattern that silently matches nothing.
    let r = apply(
        &env,
        vec![env.base.clone()],
        vec![with_excludes(copy(1, &["app"], "/dst/"), &["ok", "a["])],
        ctx_input(&ctx),
    );
    ensure_eq(
        r.err().map(|e| e.to_string()),
        Some("invalid --exclude pattern \"a[\"".into()),
        "bad --exclude",
    )
}

/// Patterns are matched against paths below each source, never against a source itself:
/// BuildKit's copier (moby/buildkit#5489, `COPY --exclude=a * .` copies `a`), and what the
/// cache counts (`excludes_never_drop_a_source_itself`).
fn copy_exclude_is_relative_to_each_source() -> TestResult {
    let env = Env::new();
    let ctx = context(&env, "ctx");
    put(&ctx, "a.txt", "a\n", 0o644);
    put(&ctx, "d/a.txt", "da\n", 0o644);
    put(&ctx, "d/b.md", "db\n", 0o644);
    let l = apply(
        &env,
        vec![env.base.clone()],
        vec![with_excludes(copy(1, &["*"], "/dst/"), &["a.txt", "*.md"])],
        ctx_input(&ctx),
    )
    .map_err(err)?;
    // `a.txt` is a source and stays; `d` is one too, and both files below it match.
    ensure_eq(tree_of(&l, "dst"), vec!["a.txt".to_string()], "copied tree")?;
    ensure_eq(text(&l, "/dst/a.txt"), "a\n".into(), "the top-level a.txt")
}

/// Past its first wildcard a source is matched over the tree walked without following
/// symlinks, as BuildKit walks it and as the cache selects it (`*/*.rs` does not search a
/// symlinked directory); a symlink matched as the last component is followed.
fn copy_globs_never_walk_through_symlinks() -> TestResult {
    let env = Env::new();
    let ctx = context(&env, "ctx");
    put(&ctx, "src/x.rs", "x\n", 0o644);
    put(&ctx, "data/z.rs", "z\n", 0o644);
    put(&ctx, "src/a*b/y.rs", "y\n", 0o644);
    symlink("../data", ctx.join("src/slink")).unwrap();
    symlink("x.rs", ctx.join("src/l.rs")).unwrap();
    let l = apply(
        &env,
        vec![env.base.clone()],
        vec![
            copy(1, &["s*/*"], "/one/"),
            // After a wildcard, a literal component is a pattern too: `\*` is a star.
            copy(1, &["s?c/a\\*b/*.rs"], "/three/"),
        ],
        ctx_input(&ctx),
    )
    .map_err(err)?;
    ensure_eq(
        tree_of(&l, "one"),
        // Matched directories bring their contents; slink (a match) is followed.
        vec![
            "l.rs".to_string(),
            "x.rs".into(),
            "y.rs".into(),
            "z.rs".into(),
        ],
        "the matched symlinks are followed",
    )?;
    ensure_eq(text(&l, "/one/l.rs"), "x\n".into(), "l.rs is x.rs's bytes")?;
    ensure_eq(
        tree_of(&l, "three"),
        vec!["y.rs".to_string()],
        "escaped star",
    )?;
    // A glob never walks through a symlink: nothing matches, so nothing is copied (and,
    // as in current BuildKit, that is no error).
    let l = apply(
        &env,
        vec![env.base.clone()],
        vec![copy(1, &["src/s*/*.rs"], "/two/")],
        ctx_input(&ctx),
    )
    .map_err(err)?;
    ensure(!l.join("two").exists(), "z.rs is not found through slink")
}

fn copy_errors() -> TestResult {
    let env = Env::new();
    let ctx = context(&env, "ctx");
    put(&ctx, "a", "a\n", 0o644);
    let r = apply(
        &env,
        vec![env.base.clone()],
        vec![copy(1, &["missing.txt"], "/x")],
        ctx_input(&ctx),
    );
    ensure_eq(
        r.err().map(|e| e.to_string()),
        Some("missing.txt: not found in the build context".into()),
        "missing source",
    )?;
    // A wildcard matching nothing copies nothing and succeeds, even when it is the only
    // source: current BuildKit (`AllowEmptyWildcard`, set by the Dockerfile frontend for
    // every COPY/ADD source; only the classic builder failed "no source files").
    let l = apply(
        &env,
        vec![env.base.clone()],
        vec![
            copy(1, &["*.nothing"], "/x/"),
            copy(1, &["a", "none*"], "/y/"),
        ],
        ctx_input(&ctx),
    )
    .map_err(err)?;
    // Not even the destination is made, as BuildKit's docopy returns before it.
    ensure(!l.join("x").exists(), "nothing copied")?;
    ensure_eq(tree_of(&l, "y"), vec!["a".to_string()], "only a copied")?;
    let mut two = copy(1, &["a", "a"], "/x");
    if let FileAction::Copy { dest_is_dir, .. } = &mut two {
        *dest_is_dir = false;
    }
    let r = apply(&env, vec![env.base.clone()], vec![two], ctx_input(&ctx));
    ensure(matches!(r, Err(FileError::DestNotDir(_))), format!("{r:?}"))?;
    let r = apply(
        &env,
        vec![env.base.clone()],
        vec![with_chown(copy(1, &["a"], "/x"), "99999999999", None)],
        ctx_input(&ctx),
    );
    ensure(
        matches!(r, Err(FileError::Chown(_))),
        format!("chown overflow: {r:?}"),
    )?;
    let r = apply(
        &env,
        vec![env.base.clone()],
        vec![with_chown(copy(1, &["a"], "/x"), "ghost", None)],
        ctx_input(&ctx),
    );
    ensure(
        matches!(r, Err(FileError::Chown(_))),
        format!("unknown user: {r:?}"),
    )?;
    let r = apply(
        &env,
        vec![env.base.clone()],
        vec![with_chmod(copy(1, &["a"], "/x"), "u+x")],
        ctx_input(&ctx),
    );
    ensure(matches!(r, Err(FileError::BadChmod(_))), format!("{r:?}"))
}

/// The add-tar conformance archive (lib/mktar.py).
pub fn mktar(out: &Path) {
    let st = std::process::Command::new("python3")
        .arg(crate::common::shared().join("conformance/diff/lib/mktar.py"))
        .arg(out)
        .status()
        .unwrap();
    assert!(st.success(), "mktar.py");
}

fn shared_add_tar_extracts_keeping_archive_metadata() -> TestResult {
    let env = Env::new();
    let ctx = context(&env, "ctx");
    mktar(&ctx.join("archive.tar"));
    let pre = env.upper();
    put(&pre, "x3/top/pre-existing", "pre\n", 0o644);
    put(&pre, "x3/top/file.txt", "old\n", 0o644);
    let l = apply(
        &env,
        vec![pre, env.base.clone()],
        vec![
            add(1, &["archive.tar"], "/x1/"),
            add(1, &["archive.tar"], "/x2"),
            add(1, &["archive.tar"], "/x3/"),
            copy(1, &["archive.tar"], "/x4/"),
        ],
        ctx_input(&ctx),
    )
    .map_err(err)?;
    for x in ["/x1", "/x2", "/x3"] {
        ensure_eq(meta(&l, x)?, ('d', 0o755, 0, 0), x)?;
        ensure_eq(
            meta(&l, &format!("{x}/rootfile.txt"))?,
            ('f', 0o600, 4242, 4343),
            "archive owner kept",
        )?;
        ensure_eq(
            meta(&l, &format!("{x}/top/emptydir"))?,
            ('d', 0o700, 1000, 50),
            "empty dir",
        )?;
        ensure_eq(
            meta(&l, &format!("{x}/top/suid"))?,
            ('f', 0o4755, 0, 0),
            "setuid",
        )?;
        ensure_eq(
            meta(&l, &format!("{x}/top/file.txt"))?,
            ('f', 0o640, 1000, 1000),
            "file",
        )?;
        ensure_eq(
            text(&l, &format!("{x}/top/file.txt")),
            "file in archive\n".into(),
            "content replaced",
        )?;
        ensure_eq(
            fs_err::read_link(l.join(&x[1..]).join("top/link")).unwrap(),
            PathBuf::from("file.txt"),
            "symlink",
        )?;
        let a = fs_err::metadata(l.join(&x[1..]).join("top/file.txt"))
            .unwrap()
            .ino();
        let b = fs_err::metadata(l.join(&x[1..]).join("top/hard"))
            .unwrap()
            .ino();
        ensure_eq(a, b, "hard link")?;
    }
    // Merge: the lower layer's file stays, no whiteout for it in the new layer.
    ensure(
        fs_err::symlink_metadata(l.join("x3/top/pre-existing")).is_err(),
        "pre-existing file untouched",
    )?;
    ensure_eq(
        meta(&l, "/x4/archive.tar")?,
        ('f', 0o644, 0, 0),
        "COPY does not extract",
    )
}

fn shared_add_tar_chown_applies_to_entries() -> TestResult {
    let env = Env::new();
    let ctx = context(&env, "ctx");
    mktar(&ctx.join("archive.tar"));
    put(&ctx, "plain.txt", "plain\n", 0o644);
    let l = apply(
        &env,
        vec![env.base.clone()],
        vec![
            with_chown(add(1, &["archive.tar"], "/owned/"), "app", Some("staff")),
            with_chown(
                add(1, &["plain.txt"], "/owned-plain.txt"),
                "app",
                Some("staff"),
            ),
        ],
        ctx_input(&ctx),
    )
    .map_err(err)?;
    ensure_eq(
        meta(&l, "/owned")?,
        ('d', 0o755, 1000, 50),
        "created dest dir",
    )?;
    ensure_eq(
        meta(&l, "/owned-plain.txt")?,
        ('f', 0o644, 1000, 50),
        "plain file",
    )?;
    // BuildKit >= 0.23: --chown applies to extracted entries (the 0.13 reference kept 4242:4343).
    ensure_eq(
        meta(&l, "/owned/rootfile.txt")?,
        ('f', 0o600, 1000, 50),
        "extracted entry",
    )?;
    ensure_eq(
        meta(&l, "/owned/top/suid")?,
        ('f', 0o4755, 1000, 50),
        "setuid kept under chown",
    )
}

fn shared_add_compressed_archives_by_content() -> TestResult {
    let env = Env::new();
    let ctx = context(&env, "ctx");
    mktar(&ctx.join("a.tar"));
    for (tool, name) in [
        ("gzip", "a.tgz"),
        ("bzip2", "a.bz"),
        ("xz", "a.xz-data"),
        ("zstd", "a.zst"),
    ] {
        let out = std::process::Command::new(tool)
            .arg("-c")
            .arg(ctx.join("a.tar"))
            .output()
            .unwrap();
        if !out.status.success() {
            return Err(format!("{tool} is needed for this test").into());
        }
        fs_err::write(ctx.join(name), out.stdout).unwrap();
    }
    put(&ctx, "junk.tar", "not an archive at all", 0o644);
    let l = apply(
        &env,
        vec![env.base.clone()],
        vec![
            add(1, &["a.tgz"], "/gz/"),
            add(1, &["a.bz"], "/bz/"),
            add(1, &["a.xz-data"], "/xz/"),
            add(1, &["a.zst"], "/zst/"),
            add(1, &["junk.tar"], "/junk/"),
        ],
        ctx_input(&ctx),
    )
    .map_err(err)?;
    for d in ["gz", "bz", "xz", "zst"] {
        ensure_eq(
            text(&l, &format!("/{d}/top/file.txt")),
            "file in archive\n".into(),
            d,
        )?;
    }
    ensure_eq(
        text(&l, "/junk/junk.tar"),
        "not an archive at all".into(),
        "non-archive copied as a file",
    )
}

fn heredoc_and_workdir() -> TestResult {
    let env = Env::new();
    let l = apply(
        &env,
        vec![env.base.clone()],
        vec![
            FileAction::MkFile {
                path: "/hd/script.sh".into(),
                contents: "#!/bin/sh\necho hi\n".into(),
                mode: 0o755,
                chown: None,
            },
            FileAction::Mkdir {
                path: "/data/app".into(),
                mode: 0o755,
                chown: Some(Chown {
                    user: "app".into(),
                    group: None,
                }),
            },
        ],
        vec![None],
    )
    .map_err(err)?;
    ensure_eq(meta(&l, "/hd")?, ('d', 0o755, 0, 0), "heredoc parent")?;
    ensure_eq(
        meta(&l, "/hd/script.sh")?,
        ('f', 0o755, 0, 0),
        "heredoc file",
    )?;
    ensure_eq(
        text(&l, "/hd/script.sh"),
        "#!/bin/sh\necho hi\n".into(),
        "heredoc content",
    )?;
    ensure_eq(
        meta(&l, "/data")?,
        ('d', 0o755, 1000, 1000),
        "workdir-after-user /data",
    )?;
    ensure_eq(
        meta(&l, "/data/app")?,
        ('d', 0o755, 1000, 1000),
        "workdir-after-user /data/app",
    )
}

fn dest_symlinks_in_the_image_stay_inside() -> TestResult {
    let env = Env::new();
    let canary = env.dir.path().join("canary");
    fs_err::create_dir_all(&canary).unwrap();
    let ctx = context(&env, "ctx");
    put(&ctx, "file.txt", "payload\n", 0o644);
    let img = env.upper();
    symlink(&canary, img.join("escape")).unwrap();
    symlink("../../../../..", img.join("up")).unwrap();
    symlink("/", img.join("app")).unwrap();
    let l = apply(
        &env,
        vec![img, env.base.clone()],
        vec![
            copy(1, &["file.txt"], "/escape/c12"),
            copy(
                1,
                &["file.txt"],
                &format!("/../../../..{}/c13", canary.display()),
            ),
            copy(1, &["file.txt"], "/up/c-up"),
            copy(1, &["file.txt"], "/app/etc/c-app"),
            FileAction::Mkdir {
                path: "/escape/sub".into(),
                mode: 0o755,
                chown: None,
            },
        ],
        ctx_input(&ctx),
    )
    .map_err(err)?;
    ensure(
        fs_err::read_dir(&canary).unwrap().next().is_none(),
        "nothing written to the host canary",
    )?;
    let inside = canary.strip_prefix("/").unwrap();
    ensure_eq(
        text(&l, &inside.join("c12").display().to_string()),
        "payload\n".into(),
        "link resolved inside the rootfs",
    )?;
    ensure_eq(
        text(&l, &inside.join("c13").display().to_string()),
        "payload\n".into(),
        "dotdot clamped to the rootfs",
    )?;
    ensure_eq(
        text(&l, "/c-up"),
        "payload\n".into(),
        "relative escape link resolves to /",
    )?;
    ensure_eq(text(&l, "/etc/c-app"), "payload\n".into(), "/app -> /")
}

fn context_symlinks_never_escape() -> TestResult {
    let env = Env::new();
    let canary = env.dir.path().join("canary");
    fs_err::create_dir_all(&canary).unwrap();
    fs_err::write(canary.join("secret.txt"), "HOSTILE-SECRET-x\n").unwrap();
    let ctx = context(&env, "ctx");
    symlink(canary.join("secret.txt"), ctx.join("link")).unwrap();
    symlink(&canary, ctx.join("d")).unwrap();
    symlink(
        format!("../../../../../../..{}", canary.display()),
        ctx.join("up"),
    )
    .unwrap();
    symlink("b", ctx.join("a")).unwrap();
    symlink("a", ctx.join("b")).unwrap();
    for src in [
        "link",
        "d/secret.txt",
        "up/secret.txt",
        &format!("../../../../..{}/secret.txt", canary.display()),
        &format!("{}/secret.txt", canary.display()),
    ] {
        let r = apply(
            &env,
            vec![env.base.clone()],
            vec![copy(1, &[src], "/out/")],
            ctx_input(&ctx),
        );
        ensure(
            matches!(r, Err(FileError::NotFound { .. })),
            format!("COPY {src}: {r:?}"),
        )?;
    }
    let r = apply(
        &env,
        vec![env.base.clone()],
        vec![copy(1, &["a"], "/x")],
        ctx_input(&ctx),
    );
    ensure(r.is_err(), "symlink loop is an error")?;
    let l = apply(
        &env,
        vec![env.base.clone()],
        vec![copy(1, &["."], "/ctx/")],
        ctx_input(&ctx),
    )
    .map_err(err)?;
    ensure_eq(
        fs_err::read_link(l.join("ctx/link")).unwrap(),
        canary.join("secret.txt"),
        "links copied as links",
    )?;
    for p in crate::run::walk(&l) {
        if fs_err::symlink_metadata(&p).unwrap().is_file() {
            ensure(
                !fs_err::read_to_string(&p)
                    .unwrap_or_default()
                    .contains("HOSTILE-SECRET"),
                format!("secret in {}", p.display()),
            )?;
        }
    }
    Ok(())
}

fn file_op_leaves_no_mounts() -> TestResult {
    let env = Env::new();
    let ctx = context(&env, "ctx");
    put(&ctx, "a", "a\n", 0o644);
    let stage = env.upper();
    put(&stage, "s", "s\n", 0o644);
    let inputs = vec![
        None,
        Some(FileSource::Context {
            dir: ctx.clone(),
            exclude: None,
        }),
        Some(FileSource::Layers(vec![stage, env.base.clone()])),
    ];
    apply(
        &env,
        vec![env.base.clone()],
        vec![copy(1, &["a"], "/a"), copy(2, &["s"], "/s")],
        inputs.clone(),
    )
    .map_err(err)?;
    let _ = apply(
        &env,
        vec![env.base.clone()],
        vec![copy(1, &["missing"], "/a")],
        inputs,
    );
    ensure_eq(
        own_mounts(&env),
        Vec::<String>::new(),
        "mounts of the file ops left",
    )?;
    // Scratch dirs are deleted in the background, right after the operation.
    let left = || -> Vec<_> {
        fs_err::read_dir(env.dir.path().join("layers"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".strata"))
            .map(|e| e.path())
            .collect()
    };
    for _ in 0..100 {
        if left().is_empty() {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Err(format!("scratch left: {:?}", left()).into())
}

/// Serves `body` with `headers` to every request on a loopback port; returns the base URL.
fn serve(body: &'static [u8], headers: &'static str) -> String {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().take(8) {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(body);
        }
    });
    format!("http://{addr}")
}

fn download(url: &str, dest: &str, checksum: Option<String>) -> FileAction {
    FileAction::Download {
        url: url.into(),
        dest: dest.into(),
        dest_is_dir: dest.ends_with('/'),
        checksum,
        chown: None,
        chmod: None,
        unpack: false,
    }
}

/// `ADD --unpack=true URL DEST` (dockerfile 1.17): a downloaded archive is extracted into
/// DEST with ADD's rules (a `../` entry stays inside), a download that is not an archive is
/// stored as a file, as without the flag.
fn add_unpack_true_extracts_a_downloaded_archive_and_keeps_other_files() -> TestResult {
    let env = Env::new();
    let mut tar = tar::Builder::new(Vec::new());
    for (name, body) in [("app/bin/run", &b"#!/bin/sh\n"[..]), ("../../escape", b"x")] {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o755);
        h.set_mtime(1_600_000_000);
        // `append_data` refuses `..`; the raw name is what a hostile archive carries.
        h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        tar.append(&h, body).unwrap();
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar.into_inner().unwrap()).unwrap();
    let archive: &'static [u8] = Box::leak(gz.finish().unwrap().into_boxed_slice());
    let base = serve(archive, "");
    let plain = serve(b"not an archive\n", "");
    let unpacked = |url: String, dest: &str| FileAction::Download {
        url,
        dest: dest.into(),
        dest_is_dir: true,
        checksum: None,
        chown: None,
        chmod: None,
        unpack: true,
    };
    let l = apply(
        &env,
        vec![env.base.clone()],
        vec![
            unpacked(format!("{base}/release.tar.gz"), "/opt/"),
            unpacked(format!("{plain}/notes.txt"), "/docs/"),
        ],
        vec![None],
    )
    .map_err(err)?;
    ensure_eq(
        fs_err::read(l.join("opt/app/bin/run")).unwrap(),
        b"#!/bin/sh\n".to_vec(),
        "the archive's file, extracted",
    )?;
    ensure_eq(
        meta(&l, "/opt/app/bin/run")?,
        ('f', 0o755, 0, 0),
        "its mode",
    )?;
    ensure(
        !l.join("opt/release.tar.gz").exists(),
        "the archive itself is not stored",
    )?;
    ensure(
        !l.join("escape").exists() && !env.dir.path().join("escape").exists(),
        "a ../ entry never leaves the destination root",
    )?;
    ensure_eq(
        fs_err::read(l.join("docs/notes.txt")).unwrap(),
        b"not an archive\n".to_vec(),
        "a download that is not an archive stays a file",
    )
}

fn add_url_downloads_without_extracting() -> TestResult {
    let env = Env::new();
    let tar_bytes: &'static [u8] = Box::leak(
        fs_err::read(env.base.join("etc/passwd"))
            .unwrap()
            .into_boxed_slice(),
    );
    let base = serve(
        tar_bytes,
        "Last-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Disposition: attachment; filename=\"../../evil\"\r\nContent-Encoding: gzip\r\n",
    );
    let sum = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(tar_bytes))
    );
    let l = apply(
        &env,
        vec![env.base.clone()],
        vec![
            download(&format!("{base}/dl/file.tar?x=1"), "/dl/", Some(sum)),
            download(&format!("{base}/other"), "/named", None),
        ],
        vec![None],
    )
    .map_err(err)?;
    ensure_eq(
        meta(&l, "/dl/file.tar")?,
        ('f', 0o600, 0, 0),
        "name from the URL path, mode 0600",
    )?;
    ensure_eq(
        fs_err::read(l.join("dl/file.tar")).unwrap(),
        tar_bytes.to_vec(),
        "stored as sent, not decoded",
    )?;
    ensure_eq(
        fs_err::metadata(l.join("dl/file.tar")).unwrap().mtime(),
        784_111_777,
        "mtime from Last-Modified",
    )?;
    ensure_eq(meta(&l, "/named")?.0, 'f', "explicit name")?;
    let r = apply(
        &env,
        vec![env.base.clone()],
        vec![download(
            &format!("{base}/x"),
            "/x",
            Some(format!("sha256:{}", "0".repeat(64))),
        )],
        vec![None],
    );
    ensure(
        matches!(
            r,
            Err(FileError::Download(
                strata_worker::DownloadError::Checksum { .. }
            ))
        ),
        format!("{r:?}"),
    )
}

/// A COPY over a parent whose entries it replaces (a file by a directory, an empty
/// directory by a file, a symlink by a file), into directories the overlay copies up, with
/// `--chown` and `--chmod`, set-ID modes, hard links, symlinks, a FIFO, xattrs, long names
/// and an empty directory: the layer written from what the copy told is the walk's, byte for
/// byte, with and without `SOURCE_DATE_EPOCH`, and most entries were told; the same with
/// `--link` (no overlay) and `--parents`. A destination
/// reached through a symlink, an archive, a `mkdir` or an incremental copy tell nothing.
fn a_copy_tells_the_layer_writer_what_it_wrote_and_the_bytes_are_the_walks() -> TestResult {
    let env = Env::new();
    let ctx = context(&env, "ctx");
    for i in 0..30 {
        put(&ctx, &format!("many/f{i:02}"), &"x".repeat(i * 100), 0o644);
    }
    put(&ctx, "a", "one\n", 0o644);
    xattr::set(ctx.join("a"), "user.note", b"kept").unwrap();
    put(&ctx, "sub/b", "two\n", 0o600);
    put(&ctx, "sub/suid", "set-uid\n", 0o4755);
    put(&ctx, "sub/sgid", "set-gid\n", 0o2755);
    put(
        &ctx,
        "old",
        "a file where the parent has a directory\n",
        0o644,
    );
    put(
        &ctx,
        "was_link",
        "a file where the parent has a symlink\n",
        0o755,
    );
    put(
        &ctx,
        "newdir/inner",
        "a directory where the parent has a file\n",
        0o644,
    );
    let long = format!("{}/{}", "d".repeat(120), "f".repeat(90));
    put(&ctx, &long, "long\n", 0o644);
    put(&ctx, "h1", "linked\n", 0o644);
    fs_err::create_dir_all(ctx.join("deep"))?;
    fs_err::hard_link(ctx.join("h1"), ctx.join("deep/h2"))?;
    fs_err::hard_link(ctx.join("h1"), ctx.join("h3"))?;
    symlink("a", ctx.join("sym")).unwrap();
    symlink("/nowhere/at/all", ctx.join("dangling")).unwrap();
    nix::unistd::mkfifo(
        &ctx.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o640),
    )?;
    fs_err::create_dir_all(ctx.join("empty"))?;
    // The parent: /app exists with entries in the way, /linked is a symlink to /app.
    let parent = env.upper();
    fs_err::create_dir_all(parent.join("app/old"))?;
    fs_err::write(parent.join("app/newdir"), "in the way")?;
    symlink("elsewhere", parent.join("app/was_link"))?;
    fs_err::write(parent.join("app/kept"), "the parent's")?;
    symlink("app", parent.join("linked"))?;
    let lowers = vec![parent, env.base.clone()];
    let run = |actions: Vec<FileAction>| {
        let upper = env.upper();
        let stats = env
            .worker
            .apply_file_op(FileRequest {
                op: FileOp { actions },
                lowers: lowers.clone(),
                upper: upper.clone(),
                inputs: ctx_input(&ctx),
                git_auth: Default::default(),
                previous: None,
            })
            .map_err(err)?;
        Ok::<_, libtest_mimic::Failed>((upper, stats))
    };
    let (upper, stats) = run(vec![
        copy(1, &["."], "/app/"),
        with_chown(copy(1, &["a", "sub"], "/etc/"), "app", Some("staff")),
        with_chmod(copy(1, &["many"], "/opt/many/"), "0640"),
        copy(1, &["sym"], "/etc/sym2"),
    ])?;
    // The same COPY with `--link` (into the bare upper, no overlay) and with `--parents`.
    let mut linked = copy(1, &["."], "/app/");
    if let FileAction::Copy { link, .. } = &mut linked {
        *link = true;
    }
    let mut parents = copy(1, &["sub/b", "many"], "/p/");
    if let FileAction::Copy { parents: p, .. } = &mut parents {
        *p = true;
    }
    let mut cases = vec![(upper, stats)];
    cases.push(run(vec![linked])?);
    cases.push(run(vec![parents])?);
    for (i, (upper, stats)) in cases.into_iter().enumerate() {
        let written = stats.written.ok_or("a COPY-only op tells what it wrote")?;
        ensure(
            written.told() >= 30,
            format!("{} entries told, case {i}", written.told()),
        )?;
        for epoch in [None, Some(978_307_200)] {
            let opts = DiffOptions {
                source_date_epoch: epoch,
            };
            let mut walked = Vec::new();
            strata_worker::write_layer(&upper, &mut walked, &opts).map_err(|e| e.to_string())?;
            let mut told = Vec::new();
            let st = strata_worker::write_layer_written(&upper, &mut told, &opts, &written)
                .map_err(|e| e.to_string())?;
            ensure(
                walked == told,
                format!("the layers differ, case {i}, epoch {epoch:?}"),
            )?;
            ensure_eq(st.told as usize, written.told(), "entries written as told")?;
        }
    }
    // Through a symlinked destination, or with an archive: nothing told.
    let (_, stats) = run(vec![copy(1, &["a"], "/linked/")])?;
    ensure(stats.written.is_none(), "a destination through a symlink")?;
    let (_, stats) = run(vec![
        copy(1, &["a"], "/x/"),
        FileAction::Mkdir {
            path: "/y".into(),
            mode: 0o755,
            chown: None,
        },
    ])?;
    ensure(stats.written.is_none(), "an op with a mkdir")?;
    Ok(())
}

/// When the upper is not as the copy told (a told file shorter, another a directory now),
/// `write_layer_told` drops its partial tar and writes the plain walk into a second writer:
/// the layer is the upper's as it is. A writer that fails (the store) fails the layer with
/// no second writer asked for.
fn a_layer_told_wrong_is_walked_again_and_a_failing_store_is_not_retried() -> TestResult {
    struct Failing;
    impl std::io::Write for Failing {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("the store is full"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let env = Env::new();
    let ctx = context(&env, "ctx");
    for i in 0..10 {
        put(&ctx, &format!("f{i}"), &"x".repeat(100 + i), 0o644);
    }
    let copy_all = || {
        let upper = env.upper();
        let stats = env
            .worker
            .apply_file_op(FileRequest {
                op: FileOp {
                    actions: vec![copy(1, &["."], "/app/")],
                },
                lowers: vec![env.base.clone()],
                upper: upper.clone(),
                inputs: ctx_input(&ctx),
                git_auth: Default::default(),
                previous: None,
            })
            .map_err(err)?;
        let written = stats.written.ok_or("a COPY-only op tells what it wrote")?;
        Ok::<_, libtest_mimic::Failed>((upper, written))
    };
    let opts = DiffOptions::default();
    for what in ["a told file shorter", "a told file now a directory"] {
        let (upper, written) = copy_all()?;
        let f3 = upper.join("app/f3");
        if what.ends_with("directory") {
            fs_err::remove_file(&f3)?;
            fs_err::create_dir(&f3)?;
        } else {
            fs_err::write(&f3, "x")?;
        }
        let mut told_only = Vec::new();
        let told = strata_worker::write_layer_written(&upper, &mut told_only, &opts, &written);
        ensure(told.is_err(), format!("{what}: the told layer fails"))?;
        let mut walked = Vec::new();
        strata_worker::write_layer(&upper, &mut walked, &opts).map_err(|e| e.to_string())?;
        let mut asked = 0;
        let (out, _) = strata_worker::write_layer_told(&upper, Vec::new(), &opts, &written, || {
            asked += 1;
            Ok::<_, strata_worker::DiffError>(Vec::new())
        })
        .map_err(|e| format!("{what}: {e}"))?;
        ensure_eq(asked, 1, "second writers asked for")?;
        ensure(out == walked, format!("{what}: the layer is the walk's"))?;
    }
    let (upper, written) = copy_all()?;
    let mut asked = 0;
    let failed = strata_worker::write_layer_told(&upper, Failing, &opts, &written, || {
        asked += 1;
        Ok::<_, strata_worker::DiffError>(Failing)
    });
    ensure(
        matches!(failed, Err(strata_worker::DiffError::Write(_))),
        "a failing writer fails the layer",
    )?;
    ensure_eq(asked, 0, "second writers asked for after a failing one")
}

/// Sets a file's mtime to `secs` after the epoch.
fn set_mtime(path: &Path, secs: u64) {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    fs_err::File::open(path).unwrap().set_modified(t).unwrap();
}

/// The layer tar of `upper`, every time after 2001 clamped to 2001.
fn layer_bytes(upper: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    let opts = DiffOptions {
        source_date_epoch: Some(978_307_200),
    };
    strata_worker::write_layer(upper, &mut out, &opts).unwrap();
    out
}

/// An incremental COPY whose sources meet on one destination path (two source directories
/// with a file `x` each; a second action through a symlink in the image onto the same
/// files) writes there as a full copy does: the clone's account of a path serves its first
/// visit only, and none at all once a destination was reached through a symlink.
fn incremental_copy_onto_one_path_twice_makes_the_same_layer() -> TestResult {
    let env = Env::new();
    let ctx = context(&env, "ctx");
    for (dir, body, secs) in [
        ("one", "first\n", 946_684_800),
        ("two", "second\n", 946_771_200),
    ] {
        for f in ["x", "y"] {
            let rel = format!("{dir}/{f}");
            put(&ctx, &rel, body, 0o644);
            set_mtime(&ctx.join(&rel), secs);
        }
    }
    put(&ctx, "three/y", "third\n", 0o644);
    set_mtime(&ctx.join("three/y"), 946_857_600);
    // The image: /srv, and /link pointing at it.
    let img = env.upper();
    fs_err::create_dir(img.join("srv")).unwrap();
    symlink("srv", img.join("link")).unwrap();
    let lowers = || vec![img.clone(), env.base.clone()];
    let actions = || {
        vec![
            copy(1, &["one", "two"], "/app/"),
            copy(1, &["three"], "/link/"),
            copy(1, &["two"], "/srv/"),
        ]
    };
    let first = apply(&env, lowers(), actions(), ctx_input(&ctx)).map_err(err)?;
    ensure_eq(
        text(&first, "/app/x"),
        "second\n".into(),
        "the last source wins",
    )?;
    ensure_eq(
        text(&first, "/srv/y"),
        "second\n".into(),
        "after the symlink",
    )?;

    put(&ctx, "one/y", "first, edited\n", 0o644);
    set_mtime(&ctx.join("one/y"), 946_684_800);
    let upper = env.upper();
    env.worker
        .apply_file_op(FileRequest {
            op: FileOp { actions: actions() },
            lowers: lowers(),
            upper: upper.clone(),
            inputs: ctx_input(&ctx),
            git_auth: Default::default(),
            previous: Some(Previous {
                layer: first.clone(),
                changed: ["one/y".to_owned()].into(),
            }),
        })
        .map_err(err)?;
    let full = apply(&env, lowers(), actions(), ctx_input(&ctx)).map_err(err)?;
    ensure_eq(text(&upper, "/app/x"), "second\n".into(), "/app/x")?;
    ensure_eq(text(&upper, "/app/y"), "second\n".into(), "/app/y")?;
    ensure_eq(text(&upper, "/srv/x"), "second\n".into(), "/srv/x")?;
    ensure_eq(text(&upper, "/srv/y"), "second\n".into(), "/srv/y")?;
    ensure(
        layer_bytes(&upper) == layer_bytes(&full),
        "the incremental layer's tar equals a full copy's",
    )
}

/// A COPY run again because one context file changed starts from its earlier layer:
/// unchanged files are hard links to it, the changed one and one whose mtime moved are
/// copied anew, the earlier layer is left as it was, and the layer's bytes equal those of a
/// full copy.
fn incremental_copy_links_unchanged_files_and_makes_the_same_layer() -> TestResult {
    let ino = |layer: &Path, rel: &str| fs_err::metadata(layer.join(rel)).unwrap().ino();
    let env = Env::new();
    let ctx = context(&env, "ctx");
    put(&ctx, "a", "one\n", 0o644);
    put(&ctx, "sub/b", "two\n", 0o600);
    put(&ctx, "sub/c", "three\n", 0o755);
    symlink("a", ctx.join("lnk")).unwrap();
    put(&ctx, "h1", "linked\n", 0o644);
    fs_err::hard_link(ctx.join("h1"), ctx.join("h2")).unwrap();
    for f in ["a", "sub/b", "sub/c", "h1"] {
        set_mtime(&ctx.join(f), 946_684_800);
    }
    let actions = || vec![copy(1, &["."], "/app/")];
    let first = apply(&env, vec![env.base.clone()], actions(), ctx_input(&ctx)).map_err(err)?;
    ensure_eq(
        ino(&first, "app/h1"),
        ino(&first, "app/h2"),
        "h1 and h2 linked",
    )?;

    // sub/b gets new bytes (the solver names it changed); sub/c only a new mtime.
    put(&ctx, "sub/b", "two, edited\n", 0o600);
    set_mtime(&ctx.join("sub/b"), 946_684_800);
    set_mtime(&ctx.join("sub/c"), 946_771_200);
    // h2 stops being a link of h1 (same bytes, same mtime: not a change for the key).
    fs_err::remove_file(ctx.join("h2")).unwrap();
    put(&ctx, "h2", "linked\n", 0o644);
    set_mtime(&ctx.join("h2"), 946_684_800);
    let upper = env.upper();
    env.worker
        .apply_file_op(FileRequest {
            op: FileOp { actions: actions() },
            lowers: vec![env.base.clone()],
            upper: upper.clone(),
            inputs: ctx_input(&ctx),
            git_auth: Default::default(),
            previous: Some(Previous {
                layer: first.clone(),
                changed: ["sub/b".to_owned()].into(),
            }),
        })
        .map_err(err)?;
    let full = apply(&env, vec![env.base.clone()], actions(), ctx_input(&ctx)).map_err(err)?;

    ensure(
        ino(&upper, "app/h1") != ino(&upper, "app/h2"),
        "files linked in the earlier layer but not in the context are copied apart",
    )?;
    ensure_eq(
        ino(&upper, "app/a"),
        ino(&first, "app/a"),
        "an unchanged file is a link to the earlier layer's",
    )?;
    ensure(
        ino(&upper, "app/sub/b") != ino(&first, "app/sub/b"),
        "the changed file is a new file",
    )?;
    ensure_eq(
        text(&upper, "/app/sub/b"),
        "two, edited\n".into(),
        "new bytes",
    )?;
    ensure_eq(
        text(&first, "/app/sub/b"),
        "two\n".into(),
        "the earlier layer is untouched",
    )?;
    ensure(
        ino(&upper, "app/sub/c") != ino(&first, "app/sub/c"),
        "a file whose mtime moved is copied again",
    )?;
    ensure_eq(
        fs_err::metadata(upper.join("app/sub/c")).unwrap().mtime(),
        946_771_200,
        "with its new mtime",
    )?;
    ensure_eq(meta(&upper, "/app/sub/b")?, ('f', 0o600, 0, 0), "mode kept")?;
    ensure_eq(meta(&upper, "/app/lnk")?.0, 'l', "symlink")?;
    ensure(
        layer_bytes(&upper) == layer_bytes(&full),
        "the incremental layer's tar equals a full copy's",
    )?;
    ensure(
        layer_bytes(&upper) != layer_bytes(&first),
        "and differs from the earlier one",
    )
}
