//! Times what a `COPY . /app` costs strata before any file is copied: scan the context, get
//! the selection's checksum, save the stat cache. Used by `bench/context/run.sh`.
//!
//! `context_bench CONTEXT_DIR CACHE_ROOT` prints one JSON line: milliseconds per phase, entry
//! and read counts, and the peak RSS of the process. Delete `CACHE_ROOT` first for a cold run.
#![expect(clippy::print_stdout, reason = "a bench prints its result")]

use std::path::PathBuf;
use std::time::Instant;
use strata_cache::{CacheDb, ContextIndex, ScanOptions, Selection};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1);
    let usage = "usage: context_bench CONTEXT_DIR CACHE_ROOT";
    let context = std::path::absolute(PathBuf::from(args.next().ok_or(usage)?))?;
    let root = PathBuf::from(args.next().ok_or(usage)?);

    let start = Instant::now();
    let db = CacheDb::open(&root)?;
    let stat_cache = db.stat_cache_path(&context);
    let opts = ScanOptions {
        stat_cache: Some(&stat_cache),
        ..ScanOptions::default()
    };
    let index = ContextIndex::scan(&context, &opts)?;
    let scanned = start.elapsed();
    let sum = index.checksum(&Selection::copy(["."]))?;
    let summed = start.elapsed();
    let wrote = index.save_stat_cache()?;
    let total = start.elapsed();

    let stats = index.stats();
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{{\"scan_ms\":{:.2},\"checksum_ms\":{:.2},\"save_ms\":{:.2},\"total_ms\":{:.2},\
         \"entries\":{},\"files\":{},\"cached_digests\":{},\"content_reads\":{},\
         \"bytes_read\":{},\"stat_cache_written\":{},\"checksum\":\"{}\",\"peak_rss_kb\":{}}}",
        ms(scanned),
        ms(summed - scanned),
        ms(total - summed),
        ms(total),
        stats.entries,
        stats.files,
        stats.cached_digests,
        stats.content_reads,
        stats.bytes_read,
        wrote,
        sum.checksum.short(),
        peak_rss_kb().unwrap_or(0),
    );
    Ok(())
}

/// `VmHWM` from `/proc/self/status`: the peak resident set of this process.
fn peak_rss_kb() -> Option<u64> {
    let status = fs_err::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
