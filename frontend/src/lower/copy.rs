//! COPY and ADD: sources from the context, a stage, an image, a URL or a heredoc, into a
//! destination against the working directory.

use super::Lowering;
use super::context::{Dispatch, uppercase_cmd};
use super::error::{DigestError, LowerError};
use super::git;
use super::path::{clean_keep_pivot, join_root, path_relative_to_workdir};
use crate::diagnostic::Diagnostic;
use crate::dockerignore::IgnoreMatcher;
use crate::expand::Lexer;
use crate::history;
use crate::instruction::{CopyInstruction, SourceContent, TypedInstruction};
use crate::rule;
use strata_graph::{Chown, FileAction, FileOp, Op, SourceLoc};

/// The values of a COPY or ADD, expanded.
struct Expanded {
    /// `--chown` as written after expansion (not empty).
    chown_raw: Option<String>,
    chown: Option<Chown>,
    /// `--checksum` (not empty).
    checksum: Option<String>,
    sources: Vec<String>,
    /// The destination as written after expansion (history shows it so).
    dest_raw: String,
    /// The destination against the working directory.
    dest: String,
    /// The destination is a directory (it ends in `/`).
    dest_is_dir: bool,
}

impl Lowering<'_> {
    /// COPY (`is_add` false) or ADD: one file node over the stage and the source's node, and a
    /// layer in history.
    pub(super) fn dispatch_copy(
        &mut self,
        stage: usize,
        d: &mut Dispatch,
        cmd: &TypedInstruction,
        c: &CopyInstruction,
        is_add: bool,
    ) -> Result<(), LowerError> {
        let at = cmd.range.start;
        let x = self.expand_copy(d, c, at)?;
        if let Some(ck) = &x.checksum {
            check_checksum(ck, &x.sources, is_add, at)?;
        }
        let (mut actions, local) = remote_sources(c, &x, is_add, at)?;
        if c.from.is_none() {
            self.copy_ignored_files(&x.sources, is_add, at);
        }
        let mut inputs = vec![d.node];
        if !local.is_empty() {
            let source_node = match &c.from {
                Some(f) => self.source_node_for(f, true, stage, at)?,
                None => self.context_node(),
            };
            inputs.push(source_node);
            actions.insert(
                0,
                FileAction::Copy {
                    from: 1,
                    sources: local,
                    dest: x.dest.clone(),
                    dest_is_dir: x.dest_is_dir,
                    chown: x.chown.clone(),
                    chmod: c.chmod.clone(),
                    link: c.link && c.chmod.is_none(),
                    parents: c.parents,
                    exclude: c.excludes.clone(),
                    unpack: is_add && c.unpack.unwrap_or(true),
                },
            );
        }
        for content in &c.contents {
            actions.push(heredoc_file(d, c, content, &x, at)?);
        }
        let text = history_text(c, &x, is_add);
        let label_text = uppercase_cmd(&self.label_text(&d.env, &cmd.source, false));
        let label = d.next_label(&label_text);
        d.node = self
            .graph
            .add(Op::File(FileOp { actions }), inputs, label, Some(cmd.range));
        self.order.push(d.node);
        d.history.push(history::entry(text, true, true));
        Ok(())
    }

    /// BuildKit's `CopyIgnoredFile`: a context source the `.dockerignore` excludes. Not
    /// judged when the file has exceptions (`!`), as BuildKit, since a file below an
    /// excluded directory may be let back in.
    fn copy_ignored_files(&mut self, sources: &[String], is_add: bool, at: SourceLoc) {
        let Some(bytes) = &self.opts.dockerignore else {
            return;
        };
        let Ok(matcher) = IgnoreMatcher::parse(bytes) else {
            return; // the build reports a bad .dockerignore where it reads the context
        };
        if matcher.is_empty() || matcher.has_exceptions() {
            return;
        }
        let root_ignored = matcher
            .patterns()
            .any(|p| matches!(p.as_str(), "*" | "**" | "**/*"));
        let cmd = if is_add { "Add" } else { "Copy" };
        for src in sources.iter().filter(|s| !is_http(s) && !is_git(s)) {
            let src = strata_graph::pattern::clean(src);
            let excluded = if src == "." || src == "/" {
                root_ignored
            } else {
                matcher.is_excluded(&src)
            };
            if excluded {
                self.diags.push(Diagnostic::warning(
                    at,
                    &rule::COPY_IGNORED_FILE,
                    format!("Attempting to {cmd} file {src:?} that is excluded by .dockerignore"),
                ));
            }
        }
    }

    /// `--chown`, `--checksum`, the sources and the destination, expanded in that order.
    fn expand_copy(
        &self,
        d: &Dispatch,
        c: &CopyInstruction,
        at: SourceLoc,
    ) -> Result<Expanded, LowerError> {
        let chown_raw = match &c.chown {
            Some(v) => Some(self.expand(d, v, at)?),
            None => None,
        };
        let chown_raw = chown_raw.filter(|s| !s.is_empty());
        let checksum = match &c.checksum {
            Some(v) => Some(self.expand(d, v, at)?).filter(|s| !s.is_empty()),
            None => None,
        };
        let mut sources = Vec::new();
        for s in &c.sources {
            sources.push(self.expand(d, s, at)?);
        }
        let dest_raw = self.expand(d, &c.dest, at)?;
        let dest = path_relative_to_workdir(&d.workdir, &dest_raw);
        Ok(Expanded {
            chown: chown_raw.as_deref().map(parse_chown),
            chown_raw,
            checksum,
            sources,
            dest_is_dir: dest.ends_with('/'),
            dest,
            dest_raw,
        })
    }
}

/// `--checksum` needs ADD, one source, and that source remote.
fn check_checksum(
    checksum: &str,
    sources: &[String],
    is_add: bool,
    at: SourceLoc,
) -> Result<(), LowerError> {
    if !is_add {
        return Err(LowerError::ChecksumForCopy { at });
    }
    if sources.len() != 1 {
        return Err(LowerError::ChecksumSources { at });
    }
    if is_git(&sources[0]) {
        return check_commit(checksum, at);
    }
    if !is_http(&sources[0]) {
        return Err(LowerError::ChecksumLocal { at });
    }
    check_digest(checksum).map_err(|error| LowerError::Checksum { at, error })
}

/// The downloads of ADD's URLs, and the other sources as paths in the source filesystem.
/// Git sources and URLs are refused for COPY.
fn remote_sources(
    c: &CopyInstruction,
    x: &Expanded,
    is_add: bool,
    at: SourceLoc,
) -> Result<(Vec<FileAction>, Vec<String>), LowerError> {
    let mut actions = Vec::new();
    let mut local = Vec::new();
    for src in &x.sources {
        if is_git(src) {
            if !is_add {
                return Err(LowerError::CopyGit { at });
            }
            actions.push(git_action(c, x, src, at)?);
            continue;
        }
        if is_http(src) {
            if !is_add {
                return Err(LowerError::CopyUrl { at });
            }
            // BuildKit downloads a URL as it is unless `--unpack=true` asks to extract it.
            actions.push(FileAction::Download {
                url: src.clone(),
                dest: x.dest.clone(),
                dest_is_dir: x.dest_is_dir,
                checksum: x.checksum.clone(),
                chown: x.chown.clone(),
                chmod: c.chmod.clone(),
                unpack: c.unpack == Some(true),
            });
            continue;
        }
        local.push(if c.parents {
            clean_keep_pivot(src)
        } else {
            join_root(src)
        });
    }
    Ok((actions, local))
}

/// ADD of a git repository: the URL's fragment or query, then the flags (a flag wins over
/// the query, as BuildKit).
fn git_action(
    c: &CopyInstruction,
    x: &Expanded,
    src: &str,
    at: SourceLoc,
) -> Result<FileAction, LowerError> {
    let g = git::parse(src).map_err(|error| LowerError::GitUrl { at, error })?;
    let checksum = x.checksum.clone().or(g.checksum);
    if let Some(ck) = &checksum {
        check_commit(ck, at)?;
    }
    Ok(FileAction::Git {
        remote: g.remote,
        reference: g.reference,
        subdir: g.subdir,
        keep_git_dir: c.keep_git_dir.or(g.keep_git_dir).unwrap_or(false),
        checksum,
        commit_mtime: g.commit_mtime,
        dest: x.dest.clone(),
        chown: x.chown.clone(),
        chmod: c.chmod.clone(),
    })
}

/// A git `--checksum`: a full commit id (SHA-1 or SHA-256), lower-case hex.
fn check_commit(checksum: &str, at: SourceLoc) -> Result<(), LowerError> {
    let hex = checksum
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if hex && matches!(checksum.len(), 40 | 64) {
        Ok(())
    } else {
        Err(LowerError::GitChecksum {
            at,
            checksum: checksum.to_owned(),
        })
    }
}

/// A heredoc source as a file made in the destination (its body expanded unless its word
/// was quoted).
fn heredoc_file(
    d: &Dispatch,
    c: &CopyInstruction,
    content: &SourceContent,
    x: &Expanded,
    at: SourceLoc,
) -> Result<FileAction, LowerError> {
    let data = if content.expand {
        Lexer::new('\\')
            .skip_process_quotes(true)
            .expand(&content.data, &d.env)
            .map_err(|error| LowerError::Expand { at, error })?
    } else {
        content.data.clone()
    };
    let path = if x.dest_is_dir {
        format!("{}{}", x.dest, content.path)
    } else {
        x.dest.clone()
    };
    let mode = match &c.chmod {
        Some(m) => apply_chmod(0o644, m).ok_or_else(|| LowerError::InvalidChmod {
            at,
            chmod: m.clone(),
        })?,
        None => 0o644,
    };
    Ok(FileAction::MkFile {
        path,
        contents: data,
        mode,
        chown: x.chown.clone(),
    })
}

/// The history text: `COPY --chown=a:b src1 <<EOF dest`, values as expanded.
fn history_text(c: &CopyInstruction, x: &Expanded, is_add: bool) -> String {
    let mut text = String::from(if is_add { "ADD" } else { "COPY" });
    if c.parents {
        text.push_str(" --parents");
    }
    if let Some(ch) = &x.chown_raw {
        text.push_str(&format!(" --chown={ch}"));
    }
    if let Some(m) = &c.chmod {
        text.push_str(&format!(" --chmod={m}"));
    }
    for src in &x.sources {
        text.push(' ');
        text.push_str(src);
    }
    for content in &c.contents {
        text.push_str(&format!(" <<{}", content.path));
    }
    text.push(' ');
    text.push_str(&x.dest_raw);
    text
}

/// `user[:group]`.
pub(super) fn parse_chown(s: &str) -> Chown {
    match s.split_once(':') {
        Some((u, g)) => Chown {
            user: u.to_owned(),
            group: Some(g.to_owned()),
        },
        None => Chown {
            user: s.to_owned(),
            group: None,
        },
    }
}

/// An http(s) URL that is not a git repository.
fn is_http(s: &str) -> bool {
    (s.starts_with("http://") || s.starts_with("https://")) && !is_git(s)
}

/// Git sources as BuildKit recognises them (`git@host:repo`, `git://`, `https://….git`).
fn is_git(s: &str) -> bool {
    if s.starts_with("git@") || s.starts_with("git://") || s.starts_with("ssh://") {
        return true;
    }
    if s.starts_with("http://") || s.starts_with("https://") {
        let path = s.split(['#', '?']).next().unwrap_or(s);
        return path.ends_with(".git");
    }
    false
}

/// An `ADD --checksum` digest: `sha256:`, `sha384:` or `sha512:` and lower-case hex.
fn check_digest(d: &str) -> Result<(), DigestError> {
    let (algo, hex) = d
        .split_once(':')
        .ok_or_else(|| DigestError::Format(d.to_owned()))?;
    let len = match algo {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err(DigestError::Algorithm(algo.to_owned())),
    };
    if hex.len() != len
        || !hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return Err(DigestError::Format(d.to_owned()));
    }
    Ok(())
}

/// A mode after `--chmod` (octal, or symbolic applied to `base`).
fn apply_chmod(base: u32, spec: &str) -> Option<u32> {
    if spec.bytes().all(|b| b.is_ascii_digit()) {
        return u32::from_str_radix(spec, 8).ok().filter(|m| *m <= 0o7777);
    }
    let mut mode = base;
    for clause in spec.split(',') {
        let who_end = clause.find(['+', '-', '='])?;
        let (who, rest) = clause.split_at(who_end);
        let mut mask = 0;
        for w in if who.is_empty() {
            "a".chars()
        } else {
            who.chars()
        } {
            mask |= match w {
                'u' => 0o4700,
                'g' => 0o2070,
                'o' => 0o1007,
                'a' => 0o7777,
                _ => return None,
            };
        }
        let op = rest.chars().next()?;
        let mut bits = 0;
        for p in rest[1..].chars() {
            bits |= match p {
                'r' => 0o444,
                'w' => 0o222,
                'x' => 0o111,
                'X' if mode & 0o111 != 0 => 0o111,
                'X' => 0,
                's' => 0o6000,
                't' => 0o1000,
                _ => return None,
            };
        }
        let bits = bits & mask;
        mode = match op {
            '+' => mode | bits,
            '-' => mode & !bits,
            _ => (mode & !mask) | bits,
        };
    }
    Some(mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chmod_modes() {
        assert_eq!(apply_chmod(0o644, "0755"), Some(0o755));
        assert_eq!(apply_chmod(0o644, "u+x"), Some(0o744));
        assert_eq!(apply_chmod(0o644, "go-r"), Some(0o600));
        assert_eq!(apply_chmod(0o644, "a=rx"), Some(0o555));
    }
}
