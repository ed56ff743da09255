//! The 32-byte blake3 digests this crate hands out: content checksums of files and selections.
strata_graph::digest32!(
    /// A blake3 digest of content: one file's entry, or a whole COPY selection. Written as
    /// 64 lowercase hex characters in files and messages.
    Checksum,
    "checksum"
);

impl From<blake3::Hash> for Checksum {
    fn from(h: blake3::Hash) -> Self {
        Checksum(*h.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_rejects_garbage() {
        let c = Checksum::from(blake3::hash(b"x"));
        assert_eq!(Checksum::from_hex(&c.to_hex()), Some(c));
        assert_eq!(c.short().len(), 12);
        assert_eq!(Checksum::from_hex("zz"), None);
        assert_eq!(Checksum::from_hex(&"0".repeat(63)), None);
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(json, format!("\"{}\"", c.to_hex()));
        assert_eq!(serde_json::from_str::<Checksum>(&json).unwrap(), c);
    }
}
