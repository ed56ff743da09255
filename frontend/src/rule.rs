//! The build-check rules: one registry of every lint rule (BuildKit's build checks, by their
//! names, descriptions and documentation URLs, plus strata's own), and the check
//! configuration that turns them off, on (experimental rules) or into errors.
//!
//! Every warning the frontend records names a [`Rule`] from [`RULES`], so `# check=skip=`,
//! `check=error=true`, `BUILDKIT_DOCKERFILE_CHECK`, `strata check --format json` and
//! `docs/checks.md` all read one list. The configuration follows BuildKit's
//! `linter.ParseLintOptions`: rule names are matched exactly, `skip=all` leaves experimental
//! rules alone, and an experimental rule runs only when `experimental=` names it (or `all`).

use std::fmt;

/// One build-check rule.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Rule {
    /// The name `# check=skip=` uses (`StageNameCasing`).
    pub name: &'static str,
    /// What the rule wants, in one sentence.
    pub description: &'static str,
    /// Its documentation page, where it has one.
    pub url: Option<&'static str>,
    /// Runs only when `# check=experimental=` names it.
    pub experimental: bool,
    /// A rule of BuildKit's (false: strata's own).
    pub buildkit: bool,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// Declares each rule as a `pub static` and lists them all in [`RULES`].
macro_rules! rules {
    ($($(#[$doc:meta])* $ident:ident = $name:literal, $url:expr, $experimental:literal, $buildkit:literal, $description:literal;)*) => {
        $(
            $(#[$doc])*
            pub static $ident: Rule = Rule {
                name: $name,
                description: $description,
                url: $url,
                experimental: $experimental,
                buildkit: $buildkit,
            };
        )*
        /// Every rule, BuildKit's in the order of its reference, then strata's own.
        pub static RULES: &[&Rule] = &[$(&$ident),*];
    };
}

/// BuildKit's URL of a rule's page (`https://docs.docker.com/go/dockerfile/rule/<slug>/`).
macro_rules! bk {
    ($slug:literal) => {
        Some(concat!(
            "https://docs.docker.com/go/dockerfile/rule/",
            $slug,
            "/"
        ))
    };
}

rules! {
    /// `FROM x AS Build`.
    STAGE_NAME_CASING = "StageNameCasing", bk!("stage-name-casing"), false, true,
        "Stage names should be lowercase";
    /// `FROM x as y` with `FROM` upper case (or the other way).
    FROM_AS_CASING = "FromAsCasing", bk!("from-as-casing"), false, true,
        "The 'as' keyword should match the case of the 'from' keyword";
    /// A continued instruction with an empty line in it.
    NO_EMPTY_CONTINUATION = "NoEmptyContinuation", bk!("no-empty-continuation"), false, true,
        "Empty continuation lines will become errors in a future release";
    /// `run` among `RUN`s.
    CONSISTENT_INSTRUCTION_CASING = "ConsistentInstructionCasing", bk!("consistent-instruction-casing"), false, true,
        "All commands within the Dockerfile should use the same casing (either upper or lower)";
    /// Two stages of one name.
    DUPLICATE_STAGE_NAME = "DuplicateStageName", bk!("duplicate-stage-name"), false, true,
        "Stage names should be unique";
    /// `FROM x AS scratch`.
    RESERVED_STAGE_NAME = "ReservedStageName", bk!("reserved-stage-name"), false, true,
        "Reserved words should not be used as stage names";
    /// Shell-form CMD or ENTRYPOINT.
    JSON_ARGS_RECOMMENDED = "JSONArgsRecommended", bk!("json-args-recommended"), false, true,
        "JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior related to OS signals";
    /// `MAINTAINER`.
    MAINTAINER_DEPRECATED = "MaintainerDeprecated", bk!("maintainer-deprecated"), false, true,
        "The MAINTAINER instruction is deprecated, use a label instead to define an image author";
    /// `FROM $X` without `ARG X` before the first FROM.
    UNDEFINED_ARG_IN_FROM = "UndefinedArgInFrom", bk!("undefined-arg-in-from"), false, true,
        "FROM command must use declared ARGs";
    /// `WORKDIR rel` before any absolute WORKDIR.
    WORKDIR_RELATIVE_PATH = "WorkdirRelativePath", bk!("workdir-relative-path"), false, true,
        "Relative workdir without an absolute workdir declared within the build can have unexpected results if the base image changes";
    /// `$X` that nothing defines.
    UNDEFINED_VAR = "UndefinedVar", bk!("undefined-var"), false, true,
        "Variables should be defined before their use";
    /// Two CMDs (or ENTRYPOINTs, HEALTHCHECKs) in one stage.
    MULTIPLE_INSTRUCTIONS_DISALLOWED = "MultipleInstructionsDisallowed", bk!("multiple-instructions-disallowed"), false, true,
        "Multiple instructions of the same type should not be used in the same stage";
    /// `ENV k v`.
    LEGACY_KEY_VALUE_FORMAT = "LegacyKeyValueFormat", bk!("legacy-key-value-format"), false, true,
        "Legacy key/value format with whitespace separator should not be used";
    /// A base image of another platform than the stage's.
    INVALID_BASE_IMAGE_PLATFORM = "InvalidBaseImagePlatform", None, false, true,
        "Base image platform does not match expected target platform";
    /// `FROM --platform=$TARGETPLATFORM`.
    REDUNDANT_TARGET_PLATFORM = "RedundantTargetPlatform", bk!("redundant-target-platform"), false, true,
        "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior";
    /// `ARG PASSWORD`, `ENV API_KEY=…`.
    SECRETS_USED_IN_ARG_OR_ENV = "SecretsUsedInArgOrEnv", bk!("secrets-used-in-arg-or-env"), false, true,
        "Sensitive data should not be used in the ARG or ENV commands";
    /// `ARG TAG` then `FROM busybox:$TAG`.
    INVALID_DEFAULT_ARG_IN_FROM = "InvalidDefaultArgInFrom", bk!("invalid-default-arg-in-from"), false, true,
        "Default value for global ARG results in an empty or invalid base image name";
    /// `FROM --platform=linux/amd64 x AS y` for a stage nothing else names.
    FROM_PLATFORM_FLAG_CONST_DISALLOWED = "FromPlatformFlagConstDisallowed", bk!("from-platform-flag-const-disallowed"), false, true,
        "FROM --platform flag should not use a constant value";
    /// COPY of a path `.dockerignore` excludes.
    COPY_IGNORED_FILE = "CopyIgnoredFile", bk!("copy-ignored-file"), false, true,
        "Attempting to Copy file that is excluded by .dockerignore";
    /// A comment right above a stage or ARG that does not start with its name.
    INVALID_DEFINITION_DESCRIPTION = "InvalidDefinitionDescription", bk!("invalid-definition-description"), true, true,
        "Comment for build stage or argument should follow the format: `# <arg/stage name> <description>`. If this is not intended to be a description comment, add an empty line or comment between the instruction and the comment.";
    /// `EXPOSE 80/TCP`.
    EXPOSE_PROTO_CASING = "ExposeProtoCasing", bk!("expose-proto-casing"), false, true,
        "Protocol in EXPOSE instruction should be lowercase";
    /// `EXPOSE 127.0.0.1:80:80`.
    EXPOSE_INVALID_FORMAT = "ExposeInvalidFormat", bk!("expose-invalid-format"), false, true,
        "IP address and host-port mapping should not be used in EXPOSE instruction. This will become an error in a future release";
    /// strata's own: `# syntax=` after the directive area, where it is an ordinary comment.
    MISPLACED_PARSER_DIRECTIVE = "MisplacedParserDirective",
        Some("docs/checks.md#misplacedparserdirective"),
        false, false,
        "Parser directives must come before any other line, comment or blank line";
    /// strata's own: an `ONBUILD` trigger that will not parse when it fires.
    INVALID_ONBUILD_TRIGGER = "InvalidOnbuildTrigger",
        Some("docs/checks.md#invalidonbuildtrigger"),
        false, false,
        "ONBUILD triggers should be valid instructions, since they run in the builds of images based on this one";
}

/// The rule called `name` (exactly, as BuildKit matches).
pub fn rule(name: &str) -> Option<&'static Rule> {
    RULES.iter().copied().find(|r| r.name == name)
}

/// The build argument that replaces the `# check=` directive.
pub const CHECK_BUILD_ARG: &str = "BUILDKIT_DOCKERFILE_CHECK";

/// Which rules run and whether their findings fail the build: the value of `# check=` or of
/// the build argument `BUILDKIT_DOCKERFILE_CHECK` (which replaces the directive).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckConfig {
    /// `skip=all`: no rule but the experimental ones asked for runs.
    pub skip_all: bool,
    /// `skip=Rule1,Rule2`.
    pub skip: Vec<String>,
    /// `experimental=all`.
    pub experimental_all: bool,
    /// `experimental=Rule1,Rule2`.
    pub experimental: Vec<String>,
    /// `error=true`: a finding fails the build.
    pub error: bool,
}

impl CheckConfig {
    /// Parses `skip=…;experimental=…;error=…` as BuildKit does (at most three parts; an
    /// unknown key or a part without `=` is an error).
    pub fn parse(value: &str) -> Result<Self, String> {
        let value = value.trim();
        let mut c = CheckConfig::default();
        if value.is_empty() {
            return Ok(c);
        }
        let list = |v: &str| v.split(',').map(|r| r.trim().to_owned()).collect();
        for part in value.splitn(3, ';') {
            let Some((k, v)) = part.split_once('=') else {
                return Err(format!("invalid check option {part:?}"));
            };
            let v = v.trim();
            match k.trim() {
                "skip" if v == "all" => c.skip_all = true,
                "skip" => c.skip = list(v),
                "experimental" if v == "all" => c.experimental_all = true,
                "experimental" => c.experimental = list(v),
                "error" => {
                    c.error = crate::mount::parse_go_bool(v).ok_or_else(|| {
                        format!("failed to parse check option {part:?}: invalid syntax")
                    })?;
                }
                k => return Err(format!("invalid check option {k:?}")),
            }
        }
        Ok(c)
    }

    /// The configuration a comment right above an instruction gives that instruction
    /// (BuildKit's `WithMergedConfigFromComments`): `check=...` (first word of the value,
    /// so `# check=skip=Rule // why` works), in `text` as the parser keeps a comment.
    /// `None` when the comment is no such directive or does not parse.
    pub fn from_comment(text: &str) -> Option<Self> {
        let (key, value) = text.split_once('=')?;
        let key = key.trim_end();
        let mut chars = key.chars();
        let valid_key = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric());
        if !valid_key || !key.eq_ignore_ascii_case("check") {
            return None;
        }
        let value = value.trim();
        let first = value.split(' ').next().unwrap_or("");
        Self::parse(first).ok()
    }

    /// This configuration with an instruction's own added (skips and experimental rules;
    /// `error` stays the file's).
    pub fn merged(&self, local: &CheckConfig) -> CheckConfig {
        let mut c = self.clone();
        c.skip_all |= local.skip_all;
        c.skip.extend(local.skip.iter().cloned());
        c.experimental_all |= local.experimental_all;
        c.experimental.extend(local.experimental.iter().cloned());
        c
    }

    /// Whether `rule` runs under this configuration.
    pub fn enabled(&self, rule: &Rule) -> bool {
        if rule.experimental {
            self.experimental_all || self.experimental.iter().any(|r| r == rule.name)
        } else {
            !(self.skip_all || self.skip.iter().any(|r| r == rule.name))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buildkit_has_22_rules_and_names_are_unique() {
        assert_eq!(RULES.iter().filter(|r| r.buildkit).count(), 22);
        let mut names: Vec<_> = RULES.iter().map(|r| r.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), RULES.len());
        assert_eq!(rule("UndefinedVar"), Some(&UNDEFINED_VAR));
        assert_eq!(rule("undefinedvar"), None);
    }

    #[test]
    fn the_check_value_is_read_like_buildkit() {
        let c = CheckConfig::parse(" skip=StageNameCasing, FromAsCasing ;error=true").unwrap();
        assert!(c.error);
        assert!(!c.enabled(&STAGE_NAME_CASING));
        assert!(!c.enabled(&FROM_AS_CASING));
        assert!(c.enabled(&UNDEFINED_VAR));
        assert!(!c.enabled(&INVALID_DEFINITION_DESCRIPTION));
        let all = CheckConfig::parse("skip=all;experimental=InvalidDefinitionDescription").unwrap();
        assert!(!all.enabled(&UNDEFINED_VAR));
        assert!(all.enabled(&INVALID_DEFINITION_DESCRIPTION));
        assert_eq!(CheckConfig::parse(""), Ok(CheckConfig::default()));
        let local = CheckConfig::from_comment("check=skip=UndefinedVar // why").unwrap();
        assert!(!c.merged(&local).enabled(&UNDEFINED_VAR));
        assert!(c.merged(&local).error);
        assert_eq!(CheckConfig::from_comment("# check=skip=all"), None);
        assert_eq!(CheckConfig::from_comment("checks=skip=all"), None);
        assert_eq!(CheckConfig::from_comment("check=bogus"), None);
        assert_eq!(
            CheckConfig::parse("skip"),
            Err("invalid check option \"skip\"".into())
        );
        assert_eq!(
            CheckConfig::parse("mode=x"),
            Err("invalid check option \"mode\"".into())
        );
        assert_eq!(
            CheckConfig::parse("error=yes"),
            Err("failed to parse check option \"error=yes\": invalid syntax".into())
        );
    }
}
