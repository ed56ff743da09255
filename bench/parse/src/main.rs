//! Parse time and peak memory of a generated Dockerfile (10,000 instructions by default).
//!
//! ```text
//! cargo run --release -p strata-bench-parse -- [INSTRUCTIONS] [--write FILE]
//! /usr/bin/time -v target/release/bench-parse        # peak RSS of the whole process
//! ```
//!
//! The Dockerfile mixes what real ones hold: stages, RUN with continuations and `--mount`
//! flags, heredocs, COPY with flags, ENV and LABEL pairs, ARG, JSON-form CMD, comments. The
//! program times the first parse and the peak resident memory (VmHWM) it adds, then 20 more
//! parses (minimum and median).
#![expect(clippy::print_stdout, reason = "a benchmark prints its figures")]

use std::time::{Duration, Instant};

/// A deterministic Dockerfile with `count` instructions.
fn generate(count: usize) -> Vec<u8> {
    use std::fmt::Write;
    let mut out = String::from("# syntax=docker/dockerfile:1\nARG BASE=debian:bookworm\n");
    let mut written = 1;
    let mut i = 0;
    while written < count {
        if i % 10 == 0 {
            let _ = writeln!(out, "# step {i}: build the pieces of module {}", i / 10);
        }
        let _ = match i % 12 {
            0 if i % 500 == 0 => {
                writeln!(out, "FROM --platform=$BUILDPLATFORM ${{BASE}} AS stage{i}")
            }
            0 | 1 => writeln!(
                out,
                "RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \\\n    apt-get update && \\\n    apt-get install -y --no-install-recommends pkg{i} && rm -rf /var/lib/apt/lists/*"
            ),
            2 => writeln!(
                out,
                "COPY --from=stage0 --chown=1000:1000 --chmod=0644 src/mod{i}/ lib/mod{i}.a /app/mod{i}/"
            ),
            3 => writeln!(
                out,
                "ENV MODULE_{i}=enabled PATH=\"/opt/mod{i}/bin:$PATH\" LEVEL_{i}=debug"
            ),
            4 => writeln!(
                out,
                "LABEL org.example.module{i}=\"module {i}\" org.example.rev={i}"
            ),
            5 => writeln!(out, "ARG VERSION_{i}=1.{i}.0"),
            6 if i % 60 == 6 => writeln!(
                out,
                "RUN <<EOF\nset -eu\necho building {i}\nmake -C /app/mod{i}\nEOF"
            ),
            6 => writeln!(out, "WORKDIR /app/mod{i}"),
            7 => writeln!(
                out,
                "RUN [\"/bin/sh\", \"-c\", \"echo step {i} && test -d /app\"]"
            ),
            8 => writeln!(
                out,
                "ADD --checksum=sha256:{i:064x} https://example.com/mod{i}.tar.gz /tmp/"
            ),
            9 => writeln!(out, "EXPOSE {}/tcp", 1000 + i % 60000),
            10 => writeln!(out, "USER {}:{}", 1000 + i % 100, 1000 + i % 100),
            _ => writeln!(out, "CMD [\"/app/mod{i}/run\", \"--port\", \"{i}\"]"),
        };
        written += 1;
        i += 1;
    }
    out.into_bytes()
}

/// The process's peak resident set (VmHWM) in KiB, from /proc.
fn peak_rss_kib() -> Option<u64> {
    let status = fs_err::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut count = 10_000;
    let mut write_to = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--write" => write_to = args.next(),
            n => count = n.parse().expect("INSTRUCTIONS must be a number"),
        }
    }
    let source = generate(count);
    if let Some(path) = write_to {
        fs_err::write(&path, &source).expect("write the Dockerfile");
    }
    // The first parse in a fresh process, as `strata build` does it, and the memory it adds.
    let before = peak_rss_kib();
    let start = Instant::now();
    let first = strata_frontend::parse(&source).expect("the generated Dockerfile parses");
    let first_time = start.elapsed();
    let after = peak_rss_kib();
    assert_eq!(first.instructions.len(), count);
    // Then 20 more, each result kept until the end so that freeing one tree is not timed as
    // part of the next parse.
    let mut kept = Vec::with_capacity(20);
    let mut times: Vec<Duration> = (0..20)
        .map(|_| {
            let start = Instant::now();
            kept.push(strata_frontend::parse(&source).expect("parses"));
            start.elapsed()
        })
        .collect();
    times.sort();
    println!(
        "instructions {count}, {} lines, {} bytes",
        source.iter().filter(|&&b| b == b'\n').count(),
        source.len()
    );
    println!(
        "parse: first {:.2} ms; then min {:.2} ms, median {:.2} ms (20 runs)",
        first_time.as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        times[times.len() / 2].as_secs_f64() * 1e3
    );
    match (before, after) {
        (Some(b), Some(a)) => println!(
            "peak RSS: {b} KiB before parsing, {a} KiB after the first parse (it adds {} KiB)",
            a.saturating_sub(b)
        ),
        _ => println!("peak RSS: /proc/self/status not readable"),
    }
}
