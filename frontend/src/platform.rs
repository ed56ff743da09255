//! Platforms (`linux/amd64`, `linux/arm/v7`): parsing and normalising as containerd does, so
//! `--platform=linux/aarch64` and `linux/arm64` name the same thing, and the values of the
//! platform build args (`TARGETPLATFORM`, `TARGETARCH`, ...).

use std::fmt;

/// An OCI platform, normalised.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// `amd64`, `arm64`, `arm`, ...
    pub arch: String,
    /// `v7` for arm; empty when the architecture has no variant.
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

    /// `os/arch` or `os/arch/variant`.
    pub fn format(&self) -> String {
        self.to_string()
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

fn normalize_os(os: &str) -> String {
    match os {
        "macos" => "darwin".into(),
        other => other.into(),
    }
}

fn normalize_arch(arch: &str, variant: &str) -> (String, String) {
    let (a, v): (&str, &str) = match (arch, variant) {
        ("i386", _) => ("386", ""),
        ("x86_64" | "x86-64" | "amd64", "") => ("amd64", ""),
        ("x86_64" | "x86-64" | "amd64", "v1") => ("amd64", ""),
        ("x86_64" | "x86-64" | "amd64", v) => ("amd64", v),
        ("aarch64" | "arm64", "8" | "v8" | "") => ("arm64", ""),
        ("aarch64" | "arm64", v) => ("arm64", v),
        ("armhf", _) => ("arm", "v7"),
        ("armel", _) => ("arm", "v6"),
        ("arm", "" | "7") => ("arm", "v7"),
        ("arm", "5" | "6" | "8") => (
            "arm",
            match variant {
                "5" => "v5",
                "6" => "v6",
                _ => "v8",
            },
        ),
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

    #[test]
    fn parse_and_normalise() {
        let d = Platform::linux_amd64();
        for (input, want) in [
            ("linux/amd64", "linux/amd64"),
            ("linux/x86_64", "linux/amd64"),
            ("Linux/AMD64", "linux/amd64"),
            ("linux/aarch64", "linux/arm64"),
            ("linux/arm64/v8", "linux/arm64"),
            ("linux/arm", "linux/arm/v7"),
            ("linux/armhf", "linux/arm/v7"),
            ("linux/arm/v6", "linux/arm/v6"),
            ("linux/386", "linux/386"),
            ("linux/i386", "linux/386"),
            ("linux", "linux/amd64"),
            ("arm64", "linux/arm64"),
            ("windows/amd64", "windows/amd64"),
        ] {
            assert_eq!(
                Platform::parse(input, &d).unwrap().to_string(),
                want,
                "{input}"
            );
        }
        for bad in ["", "linux/", "a/b/c/d", "linux/amd 64", "nonsense"] {
            assert!(Platform::parse(bad, &d).is_err(), "{bad:?}");
        }
    }
}
