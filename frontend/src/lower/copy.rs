//! COPY and ADD: sources from the context, a stage, an image, a URL or a heredoc, into a
//! destination against the working directory.

use super::Lowering;
use super::context::{Dispatch, uppercase_cmd};
use super::path::{clean_keep_pivot, join_root, path_relative_to_workdir};
use crate::expand::Lexer;
use crate::history;
use crate::instruction::{Command, CopyInstr};
use strata_graph::{Chown, FileAction, FileOp, Op};

impl Lowering<'_> {
    pub(super) fn dispatch_copy(
        &mut self,
        stage: usize,
        d: &mut Dispatch,
        cmd: &Command,
        c: &CopyInstr,
        is_add: bool,
    ) -> Result<(), String> {
        let name = if is_add { "ADD" } else { "COPY" };
        let chown_raw = match &c.chown {
            Some(v) => Some(self.expand(d, v)?),
            None => None,
        };
        let chown_raw = chown_raw.filter(|s| !s.is_empty());
        let checksum = match &c.checksum {
            Some(v) => Some(self.expand(d, v)?).filter(|s| !s.is_empty()),
            None => None,
        };
        let mut sources = Vec::new();
        for s in &c.sources {
            sources.push(self.expand(d, s)?);
        }
        let dest_raw = self.expand(d, &c.dest)?;
        let dest = path_relative_to_workdir(&d.workdir, &dest_raw);
        let dest_is_dir = dest.ends_with('/');
        let chown = chown_raw.as_deref().map(parse_chown);

        if let Some(ck) = &checksum {
            if !is_add {
                return Err("checksum can't be specified for COPY".into());
            }
            if c.sources.len() != 1 {
                return Err("checksum can't be specified for multiple sources".into());
            }
            if !is_http(&sources[0]) && !is_git(&sources[0]) {
                return Err("checksum requires HTTP(S) or Git sources".into());
            }
            check_digest(ck)?;
        }

        let mut text = String::from(name);
        if c.parents {
            text.push_str(" --parents");
        }
        if let Some(ch) = &chown_raw {
            text.push_str(&format!(" --chown={ch}"));
        }
        if let Some(m) = &c.chmod {
            text.push_str(&format!(" --chmod={m}"));
        }

        let mut inputs = vec![d.node];
        let mut actions = Vec::new();
        let mut local = Vec::new();
        for src in &sources {
            text.push(' ');
            text.push_str(src);
            if is_git(src) {
                return Err(if is_add {
                    "ADD from a git repository is not supported yet".into()
                } else {
                    "source can't be a git ref for COPY".into()
                });
            }
            if is_http(src) {
                if !is_add {
                    return Err("source can't be a URL for COPY".into());
                }
                actions.push(FileAction::Download {
                    url: src.clone(),
                    dest: dest.clone(),
                    dest_is_dir,
                    checksum: checksum.clone(),
                    chown: chown.clone(),
                    chmod: c.chmod.clone(),
                });
                continue;
            }
            local.push(if c.parents {
                clean_keep_pivot(src)
            } else {
                join_root(src)
            });
        }
        if !local.is_empty() {
            let source_node = match &c.from {
                Some(f) => {
                    let (s, _) = self.source_for(f, true);
                    self.source_node(&s?, stage)?
                }
                None => self.context_node(),
            };
            inputs.push(source_node);
            actions.insert(
                0,
                FileAction::Copy {
                    from: 1,
                    sources: local,
                    dest: dest.clone(),
                    dest_is_dir,
                    chown: chown.clone(),
                    chmod: c.chmod.clone(),
                    link: c.link && c.chmod.is_none(),
                    parents: c.parents,
                    exclude: c.excludes.clone(),
                    unpack: is_add && c.unpack.unwrap_or(true),
                },
            );
        }
        for content in &c.contents {
            text.push_str(&format!(" <<{}", content.path));
            let data = if content.expand {
                Lexer::new('\\')
                    .skip_process_quotes(true)
                    .expand(&content.data, &d.env)
                    .map_err(|e| e.to_string())?
            } else {
                content.data.clone()
            };
            let path = if dest_is_dir {
                format!("{dest}{}", content.path)
            } else {
                dest.clone()
            };
            let mode = match &c.chmod {
                Some(m) => apply_chmod(0o644, m)
                    .ok_or_else(|| format!("invalid chmod parameter: '{m}'"))?,
                None => 0o644,
            };
            actions.push(FileAction::MkFile {
                path,
                contents: data,
                mode,
                chown: chown.clone(),
            });
        }
        text.push(' ');
        text.push_str(&dest_raw);

        let label_text = uppercase_cmd(&self.label_text(d, &cmd.source, false));
        let label = d.next_label(&label_text);
        d.node = self
            .graph
            .add(Op::File(FileOp { actions }), inputs, label, Some(cmd.range));
        self.order.push(d.node);
        d.history.push(history::entry(text, true, true));
        Ok(())
    }
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

pub(super) fn is_http(s: &str) -> bool {
    (s.starts_with("http://") || s.starts_with("https://")) && !is_git(s)
}

/// Git sources as BuildKit recognises them (`git@host:repo`, `git://`, `https://….git`).
pub(super) fn is_git(s: &str) -> bool {
    if s.starts_with("git@") || s.starts_with("git://") || s.starts_with("ssh://") {
        return true;
    }
    if s.starts_with("http://") || s.starts_with("https://") {
        let path = s.split(['#', '?']).next().unwrap_or(s);
        return path.ends_with(".git");
    }
    false
}

pub(super) fn check_digest(d: &str) -> Result<(), String> {
    let (algo, hex) = d
        .split_once(':')
        .ok_or_else(|| format!("invalid checksum digest format {d:?}"))?;
    let len = match algo {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err(format!("unsupported digest algorithm {algo:?}")),
    };
    if hex.len() != len
        || !hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return Err(format!("invalid checksum digest format {d:?}"));
    }
    Ok(())
}

/// A mode after `--chmod` (octal, or symbolic applied to `base`).
pub(super) fn apply_chmod(base: u32, spec: &str) -> Option<u32> {
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
