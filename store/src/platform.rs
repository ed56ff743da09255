//! Platforms (`linux/amd64`, `linux/arm/v7`), normalised as containerd's `platforms` package
//! does, so `--platform=linux/aarch64` and `linux/arm64` name the same thing, an image config
//! saying `x86_64` is an amd64 image, and picking a manifest from an index prefers what this
//! machine runs best (`arm64` takes `arm64/v8`, then `arm/v8` … `arm/v5`; `amd64` takes `386`).

use std::fmt;

/// An OCI platform (os, architecture, variant), always normalised. `Ord` is by name (for
/// maps and stable output); which platform suits a machine better is [`Platform::preference`]
/// and [`Platform::best`].
///
/// ```
/// use strata_store::Platform;
/// let host = Platform::new("linux", "aarch64", "v8");
/// assert_eq!(host.to_string(), "linux/arm64");
/// assert_eq!(Platform::parse("linux/armhf", &host)?.to_string(), "linux/arm/v7");
/// assert!(host.matches(&Platform::new("linux", "arm", "v7")));
/// assert!(!host.matches(&Platform::new("linux", "amd64", "")));
/// # Ok::<(), strata_store::PlatformError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// `amd64`, `arm64`, `arm`, ... (OCI's `architecture`).
    pub arch: String,
    /// `v7` for arm; empty when the architecture has none (or its default, as for arm64).
    pub variant: String,
}

/// A platform string that cannot be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid platform {0:?}: expected os/arch[/variant]")]
pub struct PlatformError(pub String);

impl Platform {
    /// `linux/amd64`.
    pub fn linux_amd64() -> Self {
        Self::new("linux", "amd64", "")
    }

    /// The platform this process runs on.
    pub fn host() -> Self {
        let arch = match std::env::consts::ARCH {
            "x86" => "386",
            "powerpc" => "ppc",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "powerpc64" => "ppc64",
            "loongarch64" => "loong64",
            "mips" if cfg!(target_endian = "little") => "mipsle",
            "mips64" if cfg!(target_endian = "little") => "mips64le",
            other => other,
        };
        Self::new(std::env::consts::OS, arch, "")
    }

    /// A platform from its parts, normalised.
    pub fn new(os: &str, arch: &str, variant: &str) -> Self {
        let (arch, variant) = normalize_arch(&arch.to_lowercase(), &variant.to_lowercase());
        Self {
            os: normalize_os(&os.to_lowercase()),
            arch,
            variant,
        }
    }

    /// Parses `os`, `arch`, `os/arch` or `os/arch/variant` (containerd's `platforms.Parse`);
    /// a missing part is taken from `default`.
    pub fn parse(s: &str, default: &Platform) -> Result<Self, PlatformError> {
        let bad = || PlatformError(s.to_owned());
        let valid = |p: &str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        };
        let parts: Vec<&str> = s.split('/').collect();
        if parts.iter().any(|p| !valid(p)) {
            return Err(bad());
        }
        match parts.as_slice() {
            [one] => {
                let one = one.to_lowercase();
                if is_known_os(&one) {
                    let p = Self::new(&one, &default.arch, &default.variant);
                    // An OS alone takes the default architecture only on the default OS.
                    Ok(if p.os == default.os {
                        p
                    } else {
                        Self::new(&one, &default.arch, "")
                    })
                } else if is_known_arch(&one) {
                    Ok(Self::new(&default.os, &one, ""))
                } else {
                    Err(bad())
                }
            }
            [os, arch] => Ok(Self::new(os, arch, "")),
            [os, arch, variant] => Ok(Self::new(os, arch, variant)),
            _ => Err(bad()),
        }
    }

    /// `os/arch` or `os/arch/variant` (the same as `to_string`).
    pub fn format(&self) -> String {
        self.to_string()
    }

    /// What a machine of this platform runs, best first (containerd's `platforms.Only`): itself,
    /// then older variants of its architecture (`amd64/v3` → `v2`, `amd64`; `arm/v7` → `v6`,
    /// `v5`; `arm64/v8.2` → `v8.1`, `v8`; `arm64/v9` → `v8.5` …), then the 32-bit architecture
    /// it also runs (`amd64` → `386`, `arm64` → `arm/v8` … `arm/v5`).
    pub fn compatible(&self) -> Vec<Platform> {
        let mut out = vec![self.clone()];
        let with = |arch: &str, variant: &str| Platform::new(&self.os, arch, variant);
        match self.arch.as_str() {
            "amd64" => {
                for v in (1..variant_number(&self.variant).unwrap_or(1)).rev() {
                    out.push(with("amd64", &format!("v{v}")));
                }
                out.push(with("386", ""));
            }
            "arm" => {
                for v in (5..variant_number(&self.variant).unwrap_or(5)).rev() {
                    out.push(with("arm", &format!("v{v}")));
                }
            }
            "arm64" => {
                let variant = if self.variant.is_empty() {
                    "v8"
                } else {
                    &self.variant
                };
                let (major, minor) = match variant.strip_prefix('v').map(|v| v.split_once('.')) {
                    Some(Some((major, minor))) => (major.parse().ok(), minor.parse().unwrap_or(0)),
                    Some(None) => (variant[1..].parse::<u32>().ok(), 0),
                    None => (None, 0),
                };
                let arm64 = |major: u32, minor: u32| match minor {
                    0 => with("arm64", &format!("v{major}")),
                    m => with("arm64", &format!("v{major}.{m}")),
                };
                if let Some(mut major @ 8..) = major {
                    let mut minor = minor;
                    if major == 9 {
                        out.extend((0..minor).rev().map(|m| arm64(9, m)));
                        // v9.0 diverged from v8.5: v9.x runs what v8.(x+5) runs.
                        (major, minor) = (8, minor + 5);
                        out.push(arm64(8, minor));
                    }
                    out.extend((0..minor).rev().map(|m| arm64(major, m)));
                }
                let arm_variant = if variant.starts_with("v8.") || variant.starts_with("v9.") {
                    "v8"
                } else {
                    variant
                };
                out.extend(with("arm", arm_variant).compatible());
            }
            _ => {}
        }
        let mut seen = std::collections::HashSet::new();
        out.retain(|p| seen.insert(p.clone()));
        out
    }

    /// Whether a machine of this platform runs `candidate` (an image's or manifest's platform).
    pub fn matches(&self, candidate: &Platform) -> bool {
        self.preference(candidate).is_some()
    }

    /// How well `candidate` suits this platform: `Some(0)` for itself, larger for a less
    /// preferred compatible platform, `None` if this platform cannot run it.
    pub fn preference(&self, candidate: &Platform) -> Option<usize> {
        self.compatible().iter().position(|p| p == candidate)
    }

    /// The item whose platform suits this one best (the first of equals): how a manifest is
    /// picked from an index. `platform` gives an item's platform, `None` for one that has none.
    pub fn best<'a, T>(
        &self,
        items: &'a [T],
        platform: impl Fn(&T) -> Option<Platform>,
    ) -> Option<&'a T> {
        let compatible = self.compatible();
        items
            .iter()
            .filter_map(|item| {
                let p = platform(item)?;
                Some((compatible.iter().position(|c| *c == p)?, item))
            })
            .min_by_key(|(rank, _)| *rank)
            .map(|(_, item)| item)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

/// `v7` → 7.
fn variant_number(variant: &str) -> Option<u32> {
    variant.strip_prefix('v')?.parse().ok()
}

fn normalize_os(os: &str) -> String {
    match os {
        "macos" => "darwin".into(),
        other => other.into(),
    }
}

fn normalize_arch(arch: &str, variant: &str) -> (String, String) {
    let (a, v): (&str, &str) = match (arch, variant) {
        ("i386", _) => ("386", ""),
        ("x86_64" | "x86-64" | "amd64", "v1") => ("amd64", ""),
        ("x86_64" | "x86-64" | "amd64", v) => ("amd64", v),
        ("aarch64" | "arm64", "8" | "v8") => ("arm64", ""),
        ("aarch64" | "arm64", v) => ("arm64", v),
        ("armhf", _) => ("arm", "v7"),
        ("armel", _) => ("arm", "v6"),
        ("arm", "" | "7") => ("arm", "v7"),
        ("arm", "5") => ("arm", "v5"),
        ("arm", "6") => ("arm", "v6"),
        ("arm", "8") => ("arm", "v8"),
        (a, v) => (a, v),
    };
    (a.to_owned(), v.to_owned())
}

fn is_known_os(s: &str) -> bool {
    matches!(
        s,
        "aix"
            | "android"
            | "darwin"
            | "dragonfly"
            | "freebsd"
            | "hurd"
            | "illumos"
            | "ios"
            | "js"
            | "linux"
            | "nacl"
            | "netbsd"
            | "openbsd"
            | "plan9"
            | "solaris"
            | "windows"
            | "zos"
            | "macos"
            | "wasip1"
    )
}

fn is_known_arch(s: &str) -> bool {
    matches!(
        s,
        "386"
            | "amd64"
            | "amd64p32"
            | "arm"
            | "armbe"
            | "arm64"
            | "arm64be"
            | "ppc64"
            | "ppc64le"
            | "loong64"
            | "mips"
            | "mipsle"
            | "mips64"
            | "mips64le"
            | "mips64p32"
            | "mips64p32le"
            | "ppc"
            | "riscv"
            | "riscv64"
            | "s390"
            | "s390x"
            | "sparc"
            | "sparc64"
            | "wasm"
            | "i386"
            | "x86_64"
            | "x86-64"
            | "aarch64"
            | "armhf"
            | "armel"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One table: input (with linux/amd64 as the default) → normalised form or error.
    #[test]
    fn parse_and_normalise() {
        let d = Platform::linux_amd64();
        for (input, want) in [
            ("linux/amd64", Some("linux/amd64")),
            ("linux/x86_64", Some("linux/amd64")),
            ("linux/x86-64", Some("linux/amd64")),
            ("linux/amd64/v1", Some("linux/amd64")),
            ("linux/amd64/v3", Some("linux/amd64/v3")),
            ("Linux/AMD64", Some("linux/amd64")),
            ("linux/aarch64", Some("linux/arm64")),
            ("linux/arm64/v8", Some("linux/arm64")),
            ("linux/arm64/8", Some("linux/arm64")),
            ("linux/aarch64/v8.2", Some("linux/arm64/v8.2")),
            ("linux/arm", Some("linux/arm/v7")),
            ("linux/arm/7", Some("linux/arm/v7")),
            ("linux/arm/6", Some("linux/arm/v6")),
            ("linux/armhf", Some("linux/arm/v7")),
            ("linux/armel", Some("linux/arm/v6")),
            ("linux/arm/v6", Some("linux/arm/v6")),
            ("linux/386", Some("linux/386")),
            ("linux/i386", Some("linux/386")),
            ("macos/arm64", Some("darwin/arm64")),
            ("linux", Some("linux/amd64")),
            ("arm64", Some("linux/arm64")),
            ("armhf", Some("linux/arm/v7")),
            ("windows/amd64", Some("windows/amd64")),
            ("linux/riscv64", Some("linux/riscv64")),
            ("", None),
            ("linux/", None),
            ("/amd64", None),
            ("a/b/c/d", None),
            ("linux/amd 64", None),
            ("nonsense", None),
        ] {
            let got = Platform::parse(input, &d).map(|p| p.to_string());
            match want {
                Some(w) => assert_eq!(got.as_deref(), Ok(w), "{input}"),
                None => assert_eq!(got, Err(PlatformError(input.to_owned())), "{input}"),
            }
        }
        // An OS alone takes the default's variant only on the default's OS.
        let arm = Platform::new("linux", "arm", "v6");
        assert_eq!(
            Platform::parse("linux", &arm).unwrap().to_string(),
            "linux/arm/v6"
        );
        assert_eq!(
            Platform::parse("freebsd", &arm).unwrap().to_string(),
            "freebsd/arm/v7"
        );
    }

    #[test]
    fn compatible_platforms_best_first() {
        let list = |p: &str| {
            let p = Platform::parse(p, &Platform::linux_amd64()).unwrap();
            p.compatible()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(list("linux/amd64"), ["linux/amd64", "linux/386"]);
        assert_eq!(
            list("linux/amd64/v3"),
            [
                "linux/amd64/v3",
                "linux/amd64/v2",
                "linux/amd64",
                "linux/386"
            ]
        );
        assert_eq!(
            list("linux/arm/v7"),
            ["linux/arm/v7", "linux/arm/v6", "linux/arm/v5"]
        );
        assert_eq!(list("linux/arm/v5"), ["linux/arm/v5"]);
        assert_eq!(
            list("linux/arm64"),
            [
                "linux/arm64",
                "linux/arm/v8",
                "linux/arm/v7",
                "linux/arm/v6",
                "linux/arm/v5"
            ]
        );
        assert_eq!(
            list("linux/arm64/v8.2"),
            [
                "linux/arm64/v8.2",
                "linux/arm64/v8.1",
                "linux/arm64",
                "linux/arm/v8",
                "linux/arm/v7",
                "linux/arm/v6",
                "linux/arm/v5"
            ]
        );
        assert_eq!(
            list("linux/arm64/v9.1")[..4],
            [
                "linux/arm64/v9.1",
                "linux/arm64/v9",
                "linux/arm64/v8.6",
                "linux/arm64/v8.5"
            ]
        );
        assert_eq!(list("linux/s390x"), ["linux/s390x"]);
    }

    #[test]
    fn picks_the_best_manifest() {
        let index = [
            Some(Platform::new("linux", "386", "")),
            None,
            Some(Platform::new("linux", "arm", "v6")),
            Some(Platform::new("linux", "arm", "v7")),
            Some(Platform::new("linux", "amd64", "")),
            Some(Platform::new("windows", "amd64", "")),
        ];
        let pick = |host: Platform| host.best(&index, Clone::clone).cloned().flatten();
        assert_eq!(pick(Platform::linux_amd64()), index[4]);
        assert_eq!(pick(Platform::new("linux", "arm64", "")), index[3]);
        assert_eq!(pick(Platform::new("linux", "arm", "v6")), index[2]);
        assert_eq!(pick(Platform::new("linux", "arm", "v5")), None);
        assert_eq!(pick(Platform::new("linux", "s390x", "")), None);
        assert!(Platform::linux_amd64().matches(&Platform::new("linux", "i386", "")));
        assert!(!Platform::new("linux", "386", "").matches(&Platform::linux_amd64()));
        assert!(!Platform::linux_amd64().matches(&Platform::new("windows", "amd64", "")));
    }

    #[test]
    fn host_is_normalised() {
        let host = Platform::host();
        assert_eq!(host, Platform::new(&host.os, &host.arch, &host.variant));
        #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
        assert_eq!(host.to_string(), "linux/amd64");
        #[cfg(all(target_os = "linux", target_arch = "aarch64"))]
        assert_eq!(host.to_string(), "linux/arm64");
    }
}
