//! [`digest32!`]: the newtype every 32-byte blake3 digest of the build is made with (node
//! hashes here, cache keys and content checksums in `cache`), so that they all print,
//! parse and serialise the same way: 64 lowercase hex characters, 12 for display.

/// Defines `pub struct $name(pub [u8; 32])` with `to_hex`, `short`, `from_hex`, `Debug`
/// (`Name(0123456789ab)`), `Display` (full hex) and serde as a hex string; `$what` names it
/// in a deserialisation error.
///
/// ```
/// strata_graph::digest32!(
///     /// An example digest.
///     Example,
///     "example digest"
/// );
/// let d = Example([0xab; 32]);
/// assert_eq!(d.short(), "abababababab");
/// assert_eq!(Example::from_hex(&d.to_hex()), Some(d));
/// ```
#[macro_export]
macro_rules! digest32 {
    ($(#[$meta:meta])* $name:ident, $what:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// The full lowercase hex form.
            pub fn to_hex(&self) -> String {
                $crate::__private::hex::encode(self.0)
            }

            /// The first 12 hex characters, for display.
            pub fn short(&self) -> String {
                let mut s = self.to_hex();
                s.truncate(12);
                s
            }

            /// Parses 64 hex characters.
            pub fn from_hex(s: &str) -> Option<Self> {
                let mut out = [0u8; 32];
                $crate::__private::hex::decode_to_slice(s, &mut out).ok()?;
                Some($name(out))
            }
        }

        impl ::std::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl $crate::__private::serde::Serialize for $name {
            fn serialize<S: $crate::__private::serde::Serializer>(
                &self,
                s: S,
            ) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }

        impl<'de> $crate::__private::serde::Deserialize<'de> for $name {
            fn deserialize<D: $crate::__private::serde::Deserializer<'de>>(
                d: D,
            ) -> Result<Self, D::Error> {
                let s = <String as $crate::__private::serde::Deserialize>::deserialize(d)?;
                $name::from_hex(&s)
                    .ok_or_else(|| <D::Error as $crate::__private::serde::de::Error>::custom(
                        concat!("invalid ", $what),
                    ))
            }
        }
    };
}
