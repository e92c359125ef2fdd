//! Encodings of digests and ids.

/// Lower-case hex of `bytes` (digests, ids). Table-based: `hex::encode`
/// goes through a `char` iterator, measurably slow on the per-event and
/// per-line digests.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    // Cannot fail: the buffer is exactly twice the input.
    let _ = ::hex::encode_to_slice(bytes, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// Lower-case hex SHA-256 of `bytes`: a plugin's identity, an API key's
/// stored hash.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(bytes))
}
