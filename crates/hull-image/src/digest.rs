//! sha256 digests: validation (a digest becomes a file name, so it is checked strictly),
//! hashing writers and readers.

use std::io::{self, Read, Write};

use sha2::{Digest as _, Sha256};

use crate::ImageError;

/// The hex part of a `sha256:<64 lowercase hex>` digest; anything else is refused.
pub(crate) fn hex_of(digest: &str) -> Result<&str, ImageError> {
    match digest.strip_prefix("sha256:") {
        Some(h) if is_hex64(h) => Ok(h),
        _ => Err(ImageError::InvalidDigest {
            digest: digest.to_string(),
        }),
    }
}

pub(crate) fn is_hex64(h: &str) -> bool {
    h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `sha256:<hex>` of `data`.
pub(crate) fn sha256_of(data: &[u8]) -> String {
    let mut h = Hasher::new();
    h.update(data);
    h.finish()
}

/// An incremental sha256 that also counts bytes.
#[derive(Clone)]
pub(crate) struct Hasher {
    sha: Sha256,
    pub count: u64,
}

impl Hasher {
    pub fn new() -> Hasher {
        Hasher {
            sha: Sha256::new(),
            count: 0,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        self.sha.update(data);
        self.count += data.len() as u64;
    }

    /// `sha256:<hex>`
    pub fn finish(self) -> String {
        let out = self.sha.finalize();
        let mut s = String::with_capacity(71);
        s.push_str("sha256:");
        for b in out.iter() {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 15)]));
        }
        s
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A reader that hashes what passes through it.
pub(crate) struct HashingReader<R> {
    pub inner: R,
    pub hasher: Hasher,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Hasher::new(),
        }
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A writer that hashes what passes through it.
pub(crate) struct HashingWriter<W> {
    pub inner: W,
    pub hasher: Hasher,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Hasher::new(),
        }
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digest() {
        assert_eq!(
            sha256_of(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(
            hex_of("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
                .is_ok()
        );
        assert!(hex_of("sha256:../../etc/passwd").is_err());
        assert!(hex_of("sha512:00").is_err());
        assert!(
            hex_of("sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855")
                .is_err()
        );
    }
}
