//! Layer tars from upper directories: whiteouts, opaque dirs, links, modes, xattrs, order,
//! SOURCE_DATE_EPOCH, streaming.

use crate::common::*;
use libtest_mimic::Trial;
use sha2::Digest;
use std::io::Read;
use std::path::Path;
use strata_worker::{DiffOptions, write_layer};

pub fn tests() -> Vec<Trial> {
    vec![
        trial("diff_of_a_run_layer", diff_of_a_run_layer),
        trial(
            "diff_is_deterministic_and_clamps_mtimes",
            diff_is_deterministic_and_clamps_mtimes,
        ),
        trial(
            "diff_refuses_user_files_named_like_whiteouts",
            diff_refuses_user_files_named_like_whiteouts,
        ),
        trial(
            "diff_streams_a_1gb_file_in_flat_memory",
            diff_streams_a_1gb_file_in_flat_memory,
        ),
        trial("diff_long_names_use_pax", diff_long_names_use_pax),
    ]
}

#[derive(Debug, PartialEq)]
pub struct TarEntry {
    pub path: String,
    pub kind: char,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub link: String,
    pub data: Vec<u8>,
    pub mtime: u64,
    pub xattrs: Vec<(String, Vec<u8>)>,
    pub uname: String,
}

pub fn read_tar(bytes: &[u8]) -> Vec<TarEntry> {
    let mut a = tar::Archive::new(bytes);
    let mut out = Vec::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header().clone();
        let kind = match h.entry_type() {
            tar::EntryType::Regular => 'f',
            tar::EntryType::Directory => 'd',
            tar::EntryType::Symlink => 'l',
            tar::EntryType::Link => 'h',
            tar::EntryType::Fifo => 'p',
            tar::EntryType::Char => 'c',
            _ => '?',
        };
        let mut xattrs = Vec::new();
        if let Ok(Some(p)) = e.pax_extensions() {
            for x in p.flatten() {
                if let Some(k) = x.key().ok().and_then(|k| k.strip_prefix("SCHILY.xattr.")) {
                    xattrs.push((k.to_string(), x.value_bytes().to_vec()));
                }
            }
        }
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.push(TarEntry {
            path: String::from_utf8_lossy(&e.path_bytes()).into_owned(),
            kind,
            mode: h.mode().unwrap(),
            uid: h.uid().unwrap(),
            gid: h.gid().unwrap(),
            link: e
                .link_name_bytes()
                .map(|l| String::from_utf8_lossy(&l).into_owned())
                .unwrap_or_default(),
            data,
            mtime: h.mtime().unwrap(),
            xattrs,
            uname: h.username().ok().flatten().unwrap_or("").to_string(),
        });
    }
    out
}

fn layer_of(upper: &Path, sde: Option<i64>) -> Vec<u8> {
    let mut out = Vec::new();
    write_layer(
        upper,
        &mut out,
        &DiffOptions {
            source_date_epoch: sde,
        },
    )
    .unwrap();
    out
}

fn diff_of_a_run_layer() -> TestResult {
    let env = Env::new();
    let upper = env.upper();
    let script = "rm /bin/yes && rm -rf /home/app && mkdir /home/app && echo new > /home/app/x \
        && echo data > /tmp/f && ln /tmp/f /tmp/hard && ln -s f /tmp/sym && mkfifo /tmp/fifo \
        && chown 1000:50 /tmp/f && chmod 4755 /tmp/f && mkdir -m 1777 /tmp/sticky \
        && setfattr -n user.note -v hello /tmp/f 2>/dev/null; \
        nc -lU /tmp/sock 2>/dev/null & sleep 0.2; true";
    let (r, lines) = run_op(&env, sh(script), vec![env.base.clone()], &upper, vec![]);
    r.map_err(|e| format!("{e}: {lines:?}"))?;
    xattr::set(upper.join("tmp/f"), "user.note", b"hello").map_err(|e| e.to_string())?;
    xattr::set(upper.join("tmp/f"), "trusted.secret", b"no").map_err(|e| e.to_string())?;
    // A socket in the upper is skipped.
    let _sock = std::os::unix::net::UnixListener::bind(upper.join("tmp/sock2")).unwrap();
    let entries = read_tar(&layer_of(&upper, None));
    let names: Vec<(&str, char)> = entries.iter().map(|e| (e.path.as_str(), e.kind)).collect();
    ensure_eq(
        names,
        vec![
            ("bin/", 'd'),
            ("bin/.wh.yes", 'f'),
            ("home/", 'd'),
            ("home/app/", 'd'),
            ("home/app/.wh..wh..opq", 'f'),
            ("home/app/x", 'f'),
            ("tmp/", 'd'),
            ("tmp/f", 'f'),
            ("tmp/fifo", 'p'),
            ("tmp/hard", 'h'),
            ("tmp/sticky/", 'd'),
            ("tmp/sym", 'l'),
        ],
        "entries in order",
    )?;
    let get = |p: &str| entries.iter().find(|e| e.path == p).unwrap();
    let f = get("tmp/f");
    ensure_eq(
        (f.mode, f.uid, f.gid, f.data.as_slice(), f.uname.as_str()),
        (0o4755, 1000, 50, &b"data\n"[..], ""),
        "tmp/f",
    )?;
    ensure_eq(
        f.xattrs.clone(),
        vec![("user.note".to_string(), b"hello".to_vec())],
        "xattrs: user.* kept, trusted.* dropped",
    )?;
    ensure_eq(get("tmp/hard").link.as_str(), "tmp/f", "hard link target")?;
    ensure_eq(get("tmp/sym").link.as_str(), "f", "symlink target")?;
    ensure_eq(get("tmp/sticky/").mode, 0o1777, "sticky")?;
    ensure_eq(get("bin/.wh.yes").mode, 0, "whiteout")?;
    ensure(
        entries.iter().all(|e| !e.path.contains("trusted.overlay")),
        "no overlay xattrs",
    )
}

fn diff_is_deterministic_and_clamps_mtimes() -> TestResult {
    let env = Env::new();
    let upper = env.upper();
    super::files::put(&upper, "a/b.txt", "b\n", 0o644);
    super::files::put(&upper, "a/c.txt", "c\n", 0o600);
    let one = layer_of(&upper, Some(1_000_000));
    let two = layer_of(&upper, Some(1_000_000));
    ensure_eq(hex(&one), hex(&two), "same tree, same bytes")?;
    ensure(
        read_tar(&one).iter().all(|e| e.mtime <= 1_000_000),
        "mtimes clamped",
    )?;
    // Touching the files (new mtimes, same content) gives the same bytes under SOURCE_DATE_EPOCH.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    fs_err::write(upper.join("a/b.txt"), "b\n").unwrap();
    ensure_eq(
        hex(&layer_of(&upper, Some(1_000_000))),
        hex(&one),
        "reproducible",
    )?;
    ensure(
        hex(&layer_of(&upper, None)) != hex(&one),
        "without SOURCE_DATE_EPOCH mtimes show",
    )
}

fn hex(b: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(b))
}

fn diff_refuses_user_files_named_like_whiteouts() -> TestResult {
    let env = Env::new();
    let upper = env.upper();
    super::files::put(&upper, "bin/.wh.cat", "", 0o644);
    let r = write_layer(&upper, std::io::sink(), &DiffOptions::default());
    ensure(
        matches!(r, Err(strata_worker::DiffError::ReservedName { .. })),
        format!("{r:?}"),
    )
}

fn vm_hwm_kb() -> u64 {
    let s = fs_err::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// A writer that hashes (the diff ID) and counts, as the store's layer writer will.
struct Hashing(sha2::Sha256, u64);

impl std::io::Write for Hashing {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.update(b);
        self.1 += b.len() as u64;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn diff_streams_a_1gb_file_in_flat_memory() -> TestResult {
    let env = Env::new();
    let upper = env.upper();
    let f = fs_err::File::create(upper.join("big")).unwrap();
    f.set_len(1 << 30).unwrap(); // sparse: reads as zeros
    let before = vm_hwm_kb();
    let mut w = Hashing(sha2::Sha256::new(), 0);
    let stats = write_layer(&upper, &mut w, &DiffOptions::default()).map_err(|e| e.to_string())?;
    let after = vm_hwm_kb();
    ensure_eq(stats.content_bytes, 1 << 30, "content")?;
    ensure_eq(w.1, stats.tar_bytes, "bytes written")?;
    ensure(
        after.saturating_sub(before) < 32 * 1024,
        format!("peak memory grew by {} KiB", after.saturating_sub(before)),
    )
}

fn diff_long_names_use_pax() -> TestResult {
    let env = Env::new();
    let upper = env.upper();
    let deep = format!("{}/{}", "d".repeat(200), "f".repeat(200));
    super::files::put(&upper, &deep, "x", 0o644);
    std::os::unix::fs::symlink("t".repeat(150), upper.join("longlink")).unwrap();
    let bytes = layer_of(&upper, None);
    let entries = read_tar(&bytes);
    ensure(
        entries.iter().any(|e| e.path == deep),
        "long path read back",
    )?;
    ensure(
        entries.iter().any(|e| e.link == "t".repeat(150)),
        "long link read back",
    )?;
    // PAX ('x') headers, never GNU long-name ('L') records.
    ensure(
        bytes.chunks(512).all(|b| b.len() < 157 || b[156] != b'L'),
        "no GNU long names",
    )
}
