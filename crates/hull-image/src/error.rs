//! The one error type of the image store. Every variant names what it is about: the
//! reference, the registry, the blob digest or the file.

use std::io;
use std::path::PathBuf;

/// An error of the image store.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The reference does not follow docker's grammar.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },

    /// A platform string that is not `os/arch[/variant]`.
    #[error("invalid platform {platform:?}: {reason}")]
    InvalidPlatform { platform: String, reason: String },

    /// No local image has this name, id or id prefix.
    #[error("no such image: {reference}")]
    NotFound { reference: String },

    /// An id prefix that matches more than one local image.
    #[error("image id prefix {reference:?} is ambiguous: it matches {}", ids.join(", "))]
    Ambiguous { reference: String, ids: Vec<String> },

    /// Removing the image would delete an image a container uses.
    #[error(
        "image {reference} ({id}) is in use by a container: stop and remove the container first, or force"
    )]
    InUse { reference: String, id: String },

    /// The registry could not be reached, or answered with an error.
    #[error("registry {registry}: {message}")]
    Registry { registry: String, message: String },

    /// The registry refused us: no credentials, or credentials it rejected.
    #[error("registry {registry}: not authorized to pull {reference}: {message}")]
    Unauthorized {
        registry: String,
        reference: String,
        message: String,
    },

    /// The registry (or an archive) has no manifest for this reference.
    #[error("manifest for {reference} not found: {message}")]
    ManifestNotFound { reference: String, message: String },

    /// An image index without an entry for the requested platform.
    #[error("{reference}: no image for platform {platform} (the index has: {available})")]
    NoMatchingPlatform {
        reference: String,
        platform: String,
        available: String,
    },

    /// Content whose digest is not the one it was fetched or loaded by. It was discarded.
    #[error("blob {digest} from {origin}: digest mismatch (content hashes to {actual}); the content was discarded")]
    DigestMismatch {
        digest: String,
        actual: String,
        origin: String,
    },

    /// Content whose size is not the one its descriptor announced. It was discarded.
    #[error("blob {digest} from {origin}: expected {expected} bytes, got {actual}; the content was discarded")]
    SizeMismatch {
        digest: String,
        expected: u64,
        actual: u64,
        origin: String,
    },

    /// A digest that is not `sha256:<64 lowercase hex digits>`.
    #[error("unsupported or invalid digest {digest:?}")]
    InvalidDigest { digest: String },

    /// A manifest, config, index, archive or auth file that does not parse or is inconsistent.
    #[error("invalid {what} {name}: {reason}")]
    Invalid {
        what: &'static str,
        name: String,
        reason: String,
    },

    /// A media type the store does not handle (e.g. schema 1 manifests, foreign layers).
    #[error("{name}: unsupported media type {media_type}")]
    UnsupportedMediaType { name: String, media_type: String },

    /// A layer entry refused because it would write outside the layer, or through a symlink.
    #[error("layer {layer}: refused entry {entry:?}: {reason}")]
    UnsafeLayerEntry {
        layer: String,
        entry: String,
        reason: String,
    },

    /// A file-system operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

impl ImageError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        ImageError::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn invalid(
        what: &'static str,
        name: impl Into<String>,
        reason: impl ToString,
    ) -> Self {
        ImageError::Invalid {
            what,
            name: name.into(),
            reason: reason.to_string(),
        }
    }
}

/// Adds a context (what was done to which path) to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn ctx(self, what: &str, path: &std::path::Path) -> Result<T, ImageError>;
    fn with_ctx(self, f: impl FnOnce() -> String) -> Result<T, ImageError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, what: &str, path: &std::path::Path) -> Result<T, ImageError> {
        self.map_err(|e| ImageError::io(format!("{what} {}", path.display()), e))
    }

    fn with_ctx(self, f: impl FnOnce() -> String) -> Result<T, ImageError> {
        self.map_err(|e| ImageError::io(f(), e))
    }
}

/// Formats an error with its whole source chain (`a: b: c`).
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

#[allow(dead_code)]
pub(crate) fn path_string(p: &std::path::Path) -> String {
    PathBuf::from(p).display().to_string()
}
