//! The `KEY=VALUE,...` option strings of `--output`, `--cache-to` and `--cache-from`
//! (BuildKit's syntax), and what is wrong with one.

/// A malformed `--output`, `--cache-to` or `--cache-from` string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// A field without `=`.
    #[error("{flag} {spec:?}: {field:?} is not KEY=VALUE")]
    NotKeyValue {
        /// The flag (`--output`).
        flag: &'static str,
        /// The whole string.
        spec: String,
        /// The field.
        field: String,
    },
    /// A key this flag does not know.
    #[error("{flag} {spec:?}: unknown key {key:?}")]
    UnknownKey {
        /// The flag.
        flag: &'static str,
        /// The whole string.
        spec: String,
        /// The key.
        key: String,
    },
    /// A `type=` strata does not support.
    #[error("{flag}: type {kind:?} is not supported ({supported})")]
    UnknownType {
        /// The flag.
        flag: &'static str,
        /// The type given.
        kind: String,
        /// The types there are.
        supported: &'static str,
    },
    /// A key this type needs is missing.
    #[error("{flag} needs {needs}")]
    Missing {
        /// The flag, with its type (`--output type=oci`).
        flag: String,
        /// `dest=DIR`.
        needs: &'static str,
    },
    /// A value out of its set.
    #[error("{flag}: {key} {value:?} is not {expected}")]
    BadValue {
        /// The flag.
        flag: &'static str,
        /// The key.
        key: &'static str,
        /// The value given.
        value: String,
        /// The values there are.
        expected: &'static str,
    },
}

/// Splits `a=1,b=2` into trimmed pairs.
pub(crate) fn fields<'a>(
    flag: &'static str,
    spec: &'a str,
) -> Result<Vec<(&'a str, &'a str)>, SpecError> {
    spec.split(',')
        .map(|f| {
            f.split_once('=')
                .map(|(k, v)| (k.trim(), v.trim()))
                .ok_or_else(|| SpecError::NotKeyValue {
                    flag,
                    spec: spec.to_owned(),
                    field: f.to_owned(),
                })
        })
        .collect()
}

/// The error for a key `flag` does not know.
pub(crate) fn unknown_key(flag: &'static str, spec: &str, key: &str) -> SpecError {
    SpecError::UnknownKey {
        flag,
        spec: spec.to_owned(),
        key: key.to_owned(),
    }
}
