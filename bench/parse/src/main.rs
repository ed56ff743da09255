//! Frontend time and peak memory on a generated Dockerfile (10,000 instructions by default).
//!
//! ```text
//! cargo run --release -p strata-bench-parse -- [INSTRUCTIONS] [--write FILE] [--phase P]
//! ```
//!
//! The Dockerfile mixes what real ones hold: stages, RUN with continuations and `--mount`
//! flags, heredocs, COPY with flags, ENV and LABEL pairs, ARG, JSON-form CMD, comments. Three
//! phases are measured on the same file, each in a fresh process (the program runs itself
//! with `--phase`), so that each peak-memory figure is that phase's own:
//!
//! - `parse`: the raw parse ([`strata_frontend::parse`]);
//! - `expand`: parse, typed instructions ([`Stages::from_ast`]) and the expansion of every
//!   word Docker expands, with each stage's ARG/ENV scope as it grows: the frontend's work
//!   before any graph node exists (the walk is this program's, over the public API);
//! - `lower`: parse and full lowering of every stage, as `strata check` runs it
//!   ([`strata_frontend::lower`] with `all_stages`): expansion, mounts, labels, history,
//!   image config and the content-hashed graph.
//!
//! For each: the first run in the fresh process and the peak resident memory (VmHWM) it adds,
//! then 20 more runs (minimum and median).
#![expect(clippy::print_stdout, reason = "a benchmark prints its figures")]

use std::time::{Duration, Instant};
use strata_frontend::{
    BuildOptions, Diagnostics, EnvList, ImageResolver, InstructionKind, Lexer, Platform,
    ResolvedImage, Stages,
};

/// A deterministic Dockerfile with `count` instructions.
fn generate(count: usize) -> Vec<u8> {
    use std::fmt::Write;
    let mut out = String::from(
        "# syntax=docker/dockerfile:1\nARG BASE=debian:bookworm\nFROM ${BASE} AS tools\n",
    );
    let mut written = 2;
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
                "COPY --from=tools --chown=1000:1000 --chmod=0644 src/mod{i}/ lib/mod{i}.a /app/mod{i}/"
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

/// Every base image exists, with an empty config (what `strata check` assumes).
struct AnyImage;

impl ImageResolver for AnyImage {
    fn resolve(&self, reference: &str, platform: &Platform) -> Result<ResolvedImage, String> {
        Ok(ResolvedImage {
            reference: reference.to_owned(),
            id: format!("sha256:{reference}"),
            platform: platform.clone(),
            config: strata_graph::ImageConfig::default(),
        })
    }
}

/// Parse, typed instructions and expansion of every word Docker expands, each stage with its
/// own growing scope. Returns how many words were expanded (so nothing is optimised away).
fn parse_and_expand(source: &[u8]) -> usize {
    let df = strata_frontend::parse(source).expect("the generated Dockerfile parses");
    let mut diags = Diagnostics::new();
    let stages = Stages::from_ast(&df, &mut diags);
    assert!(
        !diags.has_errors(),
        "the generated Dockerfile is valid:\n{diags}"
    );
    let lex = Lexer::new(stages.escape);
    let mut global = EnvList::new();
    global.set("BUILDPLATFORM", "linux/amd64");
    for (decl, _) in &stages.meta_args {
        let value = decl.value.as_deref().unwrap_or_default();
        let value = lex.expand(value, &global).expect("expands");
        global.set(&decl.key, &value);
    }
    let mut expanded = 0;
    let mut word = |env: &EnvList, w: &str| {
        expanded += 1;
        lex.expand(w, env).expect("expands")
    };
    for stage in &stages.stages {
        word(&global, &stage.base);
        if let Some(p) = &stage.platform {
            word(&global, p);
        }
        let mut env = EnvList::new();
        for c in &stage.instructions {
            match &c.kind {
                InstructionKind::Env(pairs) => {
                    let values: Vec<(String, String)> = pairs
                        .iter()
                        .map(|p| (word(&env, &p.key), word(&env, &p.value)))
                        .collect();
                    for (k, v) in values {
                        env.set(&k, &v);
                    }
                }
                InstructionKind::Label(pairs) => {
                    for p in pairs {
                        word(&env, &p.key);
                        word(&env, &p.value);
                    }
                }
                InstructionKind::Arg(decls) => {
                    for d in decls {
                        let v = d.value.as_deref().map(|v| word(&env, v));
                        env.set(&d.key, v.as_deref().unwrap_or_default());
                    }
                }
                InstructionKind::Copy(c) | InstructionKind::Add(c) => {
                    for s in &c.sources {
                        word(&env, s);
                    }
                    word(&env, &c.dest);
                    for v in [&c.chown, &c.chmod, &c.checksum].into_iter().flatten() {
                        word(&env, v);
                    }
                }
                InstructionKind::Run(r) => {
                    for (m, _) in &r.mounts {
                        word(&env, m);
                    }
                }
                InstructionKind::Expose(words) | InstructionKind::Volume(words) => {
                    for w in words {
                        word(&env, w);
                    }
                }
                InstructionKind::User(w)
                | InstructionKind::Workdir(w)
                | InstructionKind::StopSignal(w) => {
                    word(&env, w);
                }
                _ => {}
            }
        }
    }
    expanded
}

/// Parse and lower every stage, as `strata check` does; returns the node count.
fn parse_and_lower(source: &[u8]) -> usize {
    let df = strata_frontend::parse(source).expect("the generated Dockerfile parses");
    let opts = BuildOptions {
        all_stages: true,
        ..BuildOptions::default()
    };
    let lowered = strata_frontend::lower(&df, &opts, &AnyImage)
        .unwrap_or_else(|d| panic!("the generated Dockerfile lowers:\n{d}"));
    lowered.graph.node_ids().count()
}

/// One phase: what it runs, and a one-line description of its result.
fn phase(name: &str) -> fn(&[u8]) -> String {
    match name {
        "parse" => |s| {
            let df = strata_frontend::parse(s).expect("the generated Dockerfile parses");
            format!("{} instructions", df.instructions.len())
        },
        "expand" => |s| format!("{} words expanded", parse_and_expand(s)),
        "lower" => |s| format!("{} graph nodes", parse_and_lower(s)),
        other => panic!("unknown phase {other:?} (parse, expand, lower)"),
    }
}

/// Times `name` on `source` in this process: the first run and the memory it adds, then 20
/// more runs.
fn measure(name: &str, source: &[u8]) {
    let run = phase(name);
    let before = peak_rss_kib();
    let start = Instant::now();
    let what = run(source);
    let first_time = start.elapsed();
    let after = peak_rss_kib();
    let mut times: Vec<Duration> = (0..20)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(run(source));
            start.elapsed()
        })
        .collect();
    times.sort();
    let memory = match (before, after) {
        (Some(b), Some(a)) => format!(
            "adds {} KiB peak RSS (process {a} KiB)",
            a.saturating_sub(b)
        ),
        _ => "peak RSS unknown (/proc/self/status not readable)".into(),
    };
    println!(
        "{name:>6}: first {:.2} ms, then min {:.2} ms, median {:.2} ms (20 runs); {memory}; {what}",
        first_time.as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        times[times.len() / 2].as_secs_f64() * 1e3,
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut count = 10_000;
    let mut write_to = None;
    let mut only = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--write" => write_to = args.next(),
            "--phase" => only = args.next(),
            n => count = n.parse().expect("INSTRUCTIONS must be a number"),
        }
    }
    let source = generate(count);
    if let Some(name) = only {
        measure(&name, &source);
        return;
    }
    if let Some(path) = write_to {
        fs_err::write(&path, &source).expect("write the Dockerfile");
    }
    println!(
        "input: {count} instructions, {} lines, {} bytes",
        source.iter().filter(|&&b| b == b'\n').count(),
        source.len()
    );
    let exe = std::env::current_exe().expect("the benchmark knows its own path");
    for name in ["parse", "expand", "lower"] {
        let status = std::process::Command::new(&exe)
            .args([count.to_string().as_str(), "--phase", name])
            .status()
            .expect("the benchmark runs itself");
        assert!(status.success(), "phase {name} failed");
    }
}
