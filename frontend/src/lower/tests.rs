//! Lowering as a user sees it: stages, scoping, configs, labels, history, errors.

use super::context::DEFAULT_PATH;
use super::*;
use std::cell::RefCell;
use strata_graph::{Chown, ExecOp, FileAction, Op};

/// Records what was resolved; images named `missing…` do not exist; `onbuild-base` has
/// triggers and `app-base` a config with env, workdir, user, cmd and labels.
#[derive(Default)]
struct Store {
    asked: RefCell<Vec<String>>,
}

impl ImageResolver for Store {
    fn resolve(&self, reference: &str, platform: &Platform) -> Result<ResolvedImage, String> {
        self.asked.borrow_mut().push(reference.to_owned());
        if reference.contains("missing") {
            return Err("not found".into());
        }
        let mut config = ImageConfig::default();
        if reference.contains("onbuild-base") {
            config.on_build = vec!["RUN echo from-base".into(), "ENV FROM_BASE=1".into()];
        }
        if reference.contains("app-base") {
            config.env = vec!["PATH=/app/bin".into(), "MODE=base".into()];
            config.working_dir = "/app".into();
            config.user = "app".into();
            config.cmd = Some(vec!["serve".into()]);
            config.labels.insert("from".into(), "base".into());
        }
        Ok(ResolvedImage {
            reference: reference.to_owned(),
            id: format!("sha256:{}", reference.len()),
            platform: platform.clone(),
            config,
        })
    }
}

fn lower_src(src: &str, opts: &BuildOptions, store: &Store) -> Result<Lowered, Diagnostics> {
    lower(&crate::parse(src.as_bytes()).expect("parses"), opts, store)
}

fn ok(src: &str) -> Lowered {
    lower_src(src, &BuildOptions::default(), &Store::default()).unwrap_or_else(|d| panic!("{d}"))
}

fn errors(src: &str) -> Vec<String> {
    match lower_src(src, &BuildOptions::default(), &Store::default()) {
        Ok(_) => Vec::new(),
        Err(d) => d.errors().map(|e| e.to_string()).collect(),
    }
}

fn labels(l: &Lowered) -> Vec<String> {
    l.graph
        .node_ids()
        .map(|i| l.graph.node(i).label.clone())
        .collect()
}

fn exec(l: &Lowered, label_part: &str) -> ExecOp {
    l.graph
        .node_ids()
        .map(|i| l.graph.node(i))
        .find(|n| n.label.contains(label_part))
        .and_then(|n| match &n.op {
            Op::Exec(e) => Some(e.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no RUN labelled {label_part}"))
}

fn history(l: &Lowered) -> Vec<String> {
    l.graph.targets[0]
        .history
        .iter()
        .map(|h| h.created_by.clone())
        .collect()
}

#[test]
fn only_needed_stages_are_resolved_and_lowered() {
    let store = Store::default();
    let src = "FROM missing-image AS unused\nRUN exit 1\nFROM alpine AS used\nRUN true\nFROM used\nCOPY --from=used /a /b\n";
    let l = lower_src(src, &BuildOptions::default(), &store).unwrap();
    assert_eq!(*store.asked.borrow(), ["docker.io/library/alpine:latest"]);
    assert_eq!(
        l.stages,
        [
            ("unused".into(), false),
            ("used".into(), true),
            ("stage-2".into(), true)
        ]
    );
    // With --target the later stages are not even looked at.
    let store = Store::default();
    let opts = BuildOptions {
        target: Some("USED".into()),
        ..BuildOptions::default()
    };
    let l = lower_src(src, &opts, &store).unwrap();
    assert_eq!(l.graph.targets[0].stage, "used");
}

#[test]
fn base_image_config_feeds_the_stage() {
    let l =
        ok("FROM app-base\nRUN echo $MODE\nENV MODE=child\nENTRYPOINT [\"run\"]\nLABEL mine=1\n");
    let run = exec(&l, "RUN echo");
    assert_eq!(run.env, ["PATH=/app/bin", "MODE=base"]);
    assert_eq!((run.cwd.as_str(), run.user.as_str()), ("/app", "app"));
    let cfg = &l.graph.targets[0].config;
    // PATH is already set, so no default PATH; ENV replaces in place.
    assert_eq!(cfg.env, ["PATH=/app/bin", "MODE=child"]);
    // ENTRYPOINT resets the inherited CMD; labels are inherited.
    assert_eq!(cfg.cmd, None);
    assert_eq!(cfg.entrypoint, Some(vec!["run".to_owned()]));
    assert_eq!(cfg.labels.len(), 2);
    // A CMD set in the same stage survives a later ENTRYPOINT.
    let l = ok("FROM app-base\nCMD [\"x\"]\nENTRYPOINT [\"run\"]\n");
    assert_eq!(l.graph.targets[0].config.cmd, Some(vec!["x".to_owned()]));
}

#[test]
fn args_are_scoped_like_docker() {
    let mut opts = BuildOptions::default();
    opts.build_args.insert("V".into(), "cli".into());
    opts.build_args.insert("UNDECLARED".into(), "x".into());
    opts.build_args
        .insert("https_proxy".into(), "http://p".into());
    let src = "ARG V=global\nARG G=g\nFROM alpine\nRUN echo 1\nARG V\nARG G\nARG D=d-$V\nRUN echo 2\nENV D=env\nRUN echo 3\n";
    let l = lower_src(src, &opts, &Store::default()).unwrap();
    let path = format!("PATH={DEFAULT_PATH}");
    assert_eq!(exec(&l, "RUN echo 1").env, std::slice::from_ref(&path));
    assert_eq!(
        exec(&l, "RUN echo 2").env,
        [path.clone(), "V=cli".into(), "G=g".into(), "D=d-cli".into()]
    );
    assert_eq!(
        exec(&l, "RUN echo 3").env,
        [path, "V=cli".into(), "G=g".into(), "D=env".into()]
    );
    // ARGs are not in the image config; proxies reach RUN outside the env and keys.
    assert_eq!(l.graph.targets[0].config.env.len(), 2);
    assert_eq!(
        l.graph.proxy_env,
        ["HTTPS_PROXY=http://p", "https_proxy=http://p"]
    );
    assert_eq!(
        history(&l),
        [
            "RUN /bin/sh -c echo 1 # buildkit",
            "ARG V=cli",
            "ARG G=g",
            "ARG D=d-cli",
            "RUN |3 V=cli G=g D=d-cli /bin/sh -c echo 2 # buildkit",
            "ENV D=env",
            "RUN |3 V=cli G=g D=env /bin/sh -c echo 3 # buildkit",
        ]
    );
}

#[test]
fn global_args_only_reach_from_lines() {
    let l = ok("ARG IMG=alpine\nFROM $IMG\nENV SEEN=[$IMG]\n");
    assert_eq!(l.graph.targets[0].config.env_get("SEEN"), Some("[]"));
    let l = ok(
        "FROM alpine\nARG TARGETPLATFORM\nARG BUILDARCH\nENV T=$TARGETPLATFORM B=$BUILDARCH N=$TARGETOS\n",
    );
    let cfg = &l.graph.targets[0].config;
    assert_eq!(
        (cfg.env_get("T"), cfg.env_get("B"), cfg.env_get("N")),
        (Some("linux/amd64"), Some("amd64"), Some(""))
    );
}

#[test]
fn workdir_creates_the_directory_as_the_user() {
    let l = ok("FROM alpine\nUSER app\nWORKDIR /data/app\nUSER root\nWORKDIR /\nWORKDIR rel\n");
    let mkdirs: Vec<FileAction> = l
        .graph
        .node_ids()
        .filter_map(|i| match &l.graph.node(i).op {
            Op::File(f) => Some(f.actions[0].clone()),
            _ => None,
        })
        .collect();
    let app = Some(Chown {
        user: "app".into(),
        group: None,
    });
    let root = Some(Chown {
        user: "root".into(),
        group: None,
    });
    assert_eq!(
        mkdirs,
        [
            FileAction::Mkdir {
                path: "/data/app".into(),
                mode: 0o755,
                chown: app
            },
            FileAction::Mkdir {
                path: "/rel".into(),
                mode: 0o755,
                chown: root
            },
        ]
    );
    assert_eq!(history(&l)[3], "WORKDIR /");
    assert!(l.graph.targets[0].history[3].empty_layer);
}

#[test]
fn onbuild_triggers_of_a_base_image_run_first() {
    let l = ok("FROM onbuild-base\nRUN echo own\n");
    let names = labels(&l);
    assert_eq!(names[1], "[2/4] ONBUILD RUN echo from-base");
    assert_eq!(names[2], "ONBUILD ENV FROM_BASE=1");
    assert_eq!(names[3], "[3/4] RUN echo own");
    assert_eq!(
        exec(&l, "RUN echo own").env.last().map(String::as_str),
        Some("FROM_BASE=1")
    );
    // The base's triggers do not stay in the child's config.
    assert!(l.graph.targets[0].config.on_build.is_empty());
}

#[test]
fn labels_number_layer_steps_like_buildkit() {
    let l = ok(
        "FROM alpine\nENV A=1\nRUN --mount=type=cache,target=/c true\nWORKDIR /\nRUN echo $A \"q\"\n",
    );
    assert_eq!(
        labels(&l),
        [
            "[stage-0 1/4] FROM docker.io/library/alpine:latest",
            "[stage-0] ENV A=1",
            "[stage-0 2/4] RUN --mount=type=cache,target=/c true",
            "[stage-0] WORKDIR /",
            "[stage-0 3/4] RUN echo 1 \"q\"",
        ]
    );
}

#[test]
fn stage_reference_errors() {
    assert_eq!(
        errors(
            "FROM alpine AS a\nCOPY --from=b /x /y\nFROM alpine AS b\nFROM scratch\nCOPY --from=a / /\n"
        ),
        [
            "Dockerfile:2:1: cannot copy from stage \"b\", it needs to be defined before current stage \"a\""
        ]
    );
    assert_eq!(
        errors("FROM alpine\nCOPY --from=3 /x /y\n"),
        ["Dockerfile:2:1: invalid stage index 3"]
    );
    assert_eq!(
        errors("FROM alpine AS a\nRUN --mount=from=a,target=/m true\n"),
        ["Dockerfile:2:1: circular dependency detected on stage: a"]
    );
    assert_eq!(
        errors("FROM alpine\nARG S=x\nCOPY --from=$S /x /y\n"),
        [
            "Dockerfile:3:1: variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround"
        ]
    );
    assert_eq!(
        errors("FROM missing-imag AS x\nFROM alpine AS missing-image\nFROM x\n"),
        [
            "Dockerfile:1:1: failed to resolve source metadata for docker.io/library/missing-imag:latest: not found (did you mean missing-image?)"
        ]
    );
    assert_eq!(
        errors("FROM Alpine\n"),
        [
            "Dockerfile:1:1: failed to parse stage name \"Alpine\": invalid reference format: repository name (library/Alpine) must be lowercase"
        ]
    );
    assert_eq!(
        errors("ARG B\nFROM $B\n"),
        ["Dockerfile:2:1: base name ($B) should not be blank"]
    );
}

#[test]
fn copy_forms_and_their_history() {
    let l = ok(
        "FROM alpine\nWORKDIR /w\nENV U=app\nCOPY --chown=$U:staff --chmod=640 a b sub/\nADD https://x.test/f.tgz /opt/\nCOPY <<EOF out.txt\n$U\nEOF\n",
    );
    assert_eq!(
        history(&l)[2..],
        [
            "COPY --chown=app:staff --chmod=640 a b sub/ # buildkit",
            "ADD https://x.test/f.tgz /opt/ # buildkit",
            "COPY <<EOF out.txt # buildkit",
        ]
    );
    let files: Vec<FileAction> = l
        .graph
        .node_ids()
        .filter_map(|i| match &l.graph.node(i).op {
            Op::File(f) => Some(f.actions.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert!(
        matches!(&files[1], FileAction::Copy { sources, dest, dest_is_dir: true, chown: Some(c), .. }
        if sources == &["/a", "/b"] && dest == "/w/sub/" && c.group.as_deref() == Some("staff"))
    );
    assert!(
        matches!(&files[2], FileAction::Download { dest, dest_is_dir: true, unpack: false, .. } if dest == "/opt/")
    );
    assert_eq!(
        files[3],
        FileAction::MkFile {
            path: "/w/out.txt".into(),
            contents: "app\n".into(),
            mode: 0o644,
            chown: None
        }
    );
    assert_eq!(
        errors("FROM alpine\nCOPY https://x.test/f /f\n"),
        ["Dockerfile:2:1: source can't be a URL for COPY"]
    );
    assert_eq!(
        errors("FROM alpine\nADD --checksum=sha256:abc a /a\n"),
        ["Dockerfile:2:1: checksum requires HTTP(S) or Git sources"]
    );
}

#[test]
fn add_of_a_git_url_becomes_a_git_action_with_its_ref_subdir_and_flags() {
    let git_actions = |src: &str| -> Vec<FileAction> {
        let l = ok(src);
        l.graph
            .node_ids()
            .filter_map(|i| match &l.graph.node(i).op {
                Op::File(f) => Some(f.actions.clone()),
                _ => None,
            })
            .flatten()
            .filter(|a| matches!(a, FileAction::Git { .. }))
            .collect()
    };
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let got = git_actions(&format!(
        "FROM alpine\nWORKDIR /w\nADD --keep-git-dir=true --checksum={commit} --chmod=644 \"https://h.test/x.git#v1:docs\" src\n"
    ));
    assert_eq!(
        got,
        [FileAction::Git {
            remote: "https://h.test/x.git".into(),
            reference: Some("v1".into()),
            subdir: Some("docs".into()),
            keep_git_dir: true,
            checksum: Some(commit.into()),
            commit_mtime: false,
            dest: "/w/src".into(),
            chown: None,
            chmod: Some("644".into()),
        }]
    );
    let got = git_actions("FROM alpine\nADD \"https://h.test/x.git?ref=v1&keep-git-dir=1\" /dst\n");
    assert!(
        matches!(&got[..], [FileAction::Git { reference: Some(r), keep_git_dir: true, dest, .. }]
            if r == "v1" && dest == "/dst")
    );
    assert_eq!(
        errors("FROM alpine\nADD --checksum=sha256:abc https://h.test/x.git /d\n"),
        [
            "Dockerfile:2:1: invalid checksum \"sha256:abc\" for a git source: expected a commit id (40 or 64 hex digits)"
        ]
    );
    assert_eq!(
        errors("FROM alpine\nADD https://h.test/x.git?depth=1 /d\n"),
        [
            "Dockerfile:2:1: unexpected key \"depth\" in git URL query (supported keys: ref, tag, branch, commit, checksum, subdir, keep-git-dir, mtime)"
        ]
    );
}

#[test]
fn equal_steps_share_a_node_across_stages() {
    let l = ok(
        "FROM alpine AS a\nRUN make\nFROM alpine AS b\nRUN make\nFROM scratch\nCOPY --from=a /x /x\nCOPY --from=b /x /y\n",
    );
    let runs: BTreeSet<_> = l
        .graph
        .node_ids()
        .filter(|i| matches!(l.graph.node(*i).op, Op::Exec(_)))
        .collect();
    assert_eq!(runs.len(), 1);
}

#[test]
fn lint_warnings_like_buildkit() {
    let all = BuildOptions {
        all_stages: true,
        ..BuildOptions::default()
    };
    let src = "ARG TAG=1\nFROM alpine${TAGG} as Build\nCMD a\nCMD [\"b\"]\nWORKDIR rel\nWORKDIR again\nrun true\nFROM alpine AS scratch\n";
    let l = lower_src(src, &all, &Store::default()).unwrap();
    let got: Vec<String> = l
        .warnings
        .iter()
        .map(|w| {
            format!(
                "{}:{} {}",
                w.loc.line,
                w.rule.map_or("", |r| r.name),
                w.text()
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            "2:FromAsCasing 'as' and 'FROM' keywords' casing do not match",
            "2:StageNameCasing Stage name 'Build' should be lowercase",
            "2:UndefinedArgInFrom FROM argument 'TAGG' is not declared (did you mean TAG?)",
            "3:JSONArgsRecommended JSON arguments recommended for CMD to prevent unintended behavior related to OS signals",
            "3:MultipleInstructionsDisallowed Multiple CMD instructions should not be used in the same stage because only the last one will be used",
            "5:WorkdirRelativePath Relative workdir \"rel\" can have unexpected results if the base image changes",
            "7:ConsistentInstructionCasing Command 'run' should match the case of the command majority (uppercase)",
            "8:ReservedStageName Stage name should not use the same name as reserved stage \"scratch\"",
        ]
    );
}

#[test]
fn check_directive_skips_rules_or_makes_them_errors() {
    let src = "FROM alpine\nMAINTAINER me\nENV A b\n";
    let rules = |l: &Lowered| -> Vec<&str> {
        l.warnings
            .iter()
            .filter_map(|w| w.rule.map(|r| r.name))
            .collect()
    };
    assert_eq!(
        rules(&ok(src)),
        ["MaintainerDeprecated", "LegacyKeyValueFormat"]
    );
    let skipped = ok(&format!("# check=skip=MaintainerDeprecated\n{src}"));
    assert_eq!(rules(&skipped), ["LegacyKeyValueFormat"]);
    // BuildKit matches rule names exactly.
    let skipped = ok(&format!("# check=skip=maintainerdeprecated\n{src}"));
    assert_eq!(rules(&skipped).len(), 2);
    assert!(ok(&format!("# check=skip=all\n{src}")).warnings.is_empty());
    assert_eq!(
        errors(&format!(
            "# check=error=true;skip=LegacyKeyValueFormat\n{src}"
        )),
        ["Dockerfile:1:1: lint violation found for rules: MaintainerDeprecated"]
    );
    assert_eq!(
        errors(&format!("# check=skip=all;mode=x\n{src}")),
        ["Dockerfile:1:1: failed to parse check options: invalid check option \"mode\""]
    );
    // The build argument replaces the directive.
    let arg = |v: &str| BuildOptions {
        build_args: [("BUILDKIT_DOCKERFILE_CHECK".to_owned(), v.to_owned())].into(),
        ..BuildOptions::default()
    };
    let with_directive = format!("# check=skip=all\n{src}");
    let l = lower_src(
        &with_directive,
        &arg("skip=LegacyKeyValueFormat"),
        &Store::default(),
    )
    .unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(rules(&l), ["MaintainerDeprecated"]);
    let failed = lower_src(src, &arg("error=true"), &Store::default())
        .err()
        .map(|d| d.errors().map(ToString::to_string).collect::<Vec<_>>());
    assert_eq!(
        failed,
        Some(vec![
            "Dockerfile:1:1: lint violation found for rules: LegacyKeyValueFormat, MaintainerDeprecated"
                .to_owned()
        ])
    );
}

#[test]
fn a_mount_without_target_goes_on_the_working_directory() {
    let targets = |src: &str, label: &str| -> Vec<String> {
        exec(&ok(src), label)
            .mounts
            .iter()
            .map(|m| m.target.clone())
            .collect()
    };
    assert_eq!(
        targets(
            "FROM alpine\nWORKDIR /src\nRUN --mount=type=bind true\n",
            "true"
        ),
        ["/src"]
    );
    assert_eq!(
        targets(
            "FROM alpine AS a\nFROM alpine\nWORKDIR /src\nRUN --mount=from=a,src=/etc,ro ls\n",
            "ls"
        ),
        ["/src"]
    );
    assert_eq!(
        targets(
            "FROM alpine\nWORKDIR /w\nRUN --mount=type=cache,target=c --mount=type=tmpfs \\\n --mount=type=secret,id=tok --mount=type=ssh --mount=type=ssh,target=s true\n",
            "true"
        ),
        [
            "/w/c",
            "/w",
            "/run/secrets/tok",
            "/run/buildkit/ssh_agent.0",
            "/w/s"
        ]
    );
    assert_eq!(
        errors("FROM alpine\nRUN --mount=type=bind true\n"),
        ["Dockerfile:2:1: invalid mount target \"/\""]
    );
    // A cache's id defaults to its target as written, cleaned (BuildKit's path.Clean).
    let ids: Vec<String> = exec(
        &ok("FROM alpine\nWORKDIR /w\nRUN --mount=type=cache,target=c/ --mount=type=cache,target=/x/./y,id= true\n"),
        "true",
    )
    .mounts
    .iter()
    .filter_map(|m| match &m.kind {
        strata_graph::MountKind::Cache { id, .. } => Some(id.clone()),
        _ => None,
    })
    .collect();
    assert_eq!(ids, ["c", "/x/y"]);
}

#[test]
fn errors_found_while_lowering_name_the_line_and_the_problem() {
    let cases = [
        (
            "FROM alpine\nARG T=/\nRUN --mount=type=bind,target=$T true\n",
            "Dockerfile:3:1: invalid mount target \"/\"",
        ),
        (
            "FROM alpine\nARG S=x\nRUN --mount=type=ssh,source=$S true\n",
            "Dockerfile:3:1: ssh does not support source",
        ),
        (
            "FROM alpine\nARG M=type=bogus\nRUN --mount=$M true\n",
            "Dockerfile:3:1: invalid field '$M' must be a key=value pair (at 3:5)",
        ),
        (
            "FROM alpine\nARG V\nVOLUME $V\n",
            "Dockerfile:3:1: VOLUME specified can not be an empty string",
        ),
        (
            "FROM alpine\nARG S=SIGFOO\nSTOPSIGNAL $S\n",
            "Dockerfile:3:1: Invalid signal: SIGFOO",
        ),
        (
            "FROM alpine\nEXPOSE 1-2:3-7\n",
            "Dockerfile:2:1: invalid ranges specified for container and host Ports: 3-7 and 1-2",
        ),
        (
            "FROM alpine\nADD --checksum=md5:abc https://x.test/f /f\n",
            "Dockerfile:2:1: unsupported digest algorithm \"md5\"",
        ),
        (
            "FROM alpine AS build\nFROM alpine\nCOPY --from=buildd: /a /b\n",
            "Dockerfile:3:1: \"buildd:\" is neither a stage nor a valid image reference: invalid reference format (did you mean build?)",
        ),
        (
            "ARG P\nFROM --platform=$P alpine\n",
            "Dockerfile:2:1: empty platform value from expression $P",
        ),
        (
            "FROM --platform=foo alpine\n",
            "Dockerfile:1:1: failed to parse platform foo: invalid platform \"foo\": expected os/arch[/variant]",
        ),
        (
            "FROM alpine AS base\nONBUILD RUN --bogus x\nFROM base\n",
            "Dockerfile:3:1: failed to process ONBUILD trigger \"RUN --bogus x\": unknown flag: bogus",
        ),
        (
            "FROM alpine\nCOPY git@github.com:a/b.git /x\n",
            "Dockerfile:2:1: source can't be a git ref for COPY",
        ),
        (
            "FROM alpine\nENV A=${B:?unset}\n",
            "Dockerfile:2:1: failed to process \"${B:?unset}\": B: unset",
        ),
    ];
    for (src, want) in cases {
        assert_eq!(errors(src), [want], "{src}");
    }
}

#[test]
fn experimental_rules_run_only_when_asked_for() {
    let src = "# a comment\nFROM alpine AS base\n";
    assert!(ok(src).warnings.is_empty());
    let l = ok(&format!("# check=skip=all;experimental=all\n{src}"));
    let rules: Vec<&str> = l
        .warnings
        .iter()
        .filter_map(|w| w.rule.map(|r| r.name))
        .collect();
    assert_eq!(rules, ["InvalidDefinitionDescription"]);
}

#[test]
fn strata_own_rules_are_skipped_like_buildkits() {
    let src = "FROM alpine\n# syntax=x/y\nRUN true\n";
    let rules = |src: &str| -> Vec<&'static str> {
        ok(src)
            .warnings
            .iter()
            .filter_map(|w| w.rule.map(|r| r.name))
            .collect()
    };
    assert_eq!(rules(src), ["MisplacedParserDirective"]);
    assert!(rules(&format!("# check=skip=MisplacedParserDirective\n{src}")).is_empty());
}

#[test]
fn add_unpack_true_of_a_url_asks_the_download_to_be_extracted() {
    let l = ok("FROM alpine\nADD --unpack=true https://x.test/a.tar.gz /d/\n");
    let unpack: Vec<bool> = l
        .graph
        .node_ids()
        .filter_map(|i| match &l.graph.node(i).op {
            Op::File(f) => Some(f.actions.clone()),
            _ => None,
        })
        .flatten()
        .filter_map(|a| match a {
            FileAction::Download { unpack, .. } => Some(unpack),
            _ => None,
        })
        .collect();
    assert_eq!(unpack, [true]);
}
