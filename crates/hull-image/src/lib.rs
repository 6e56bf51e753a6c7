//! hull's image store: pulls images from OCI / Docker v2 registries, loads and saves
//! docker-archive and OCI archives, and keeps every layer unpacked once, as a read-only
//! directory overlayfs can stack.
//!
//! Everything is blocking (do not call it from inside an async runtime); a pull runs a small
//! single-threaded tokio runtime of its own.
//!
//! ```no_run
//! use hull_image::{PullOptions, Progress, Store};
//! # fn main() -> Result<(), hull_image::ImageError> {
//! let store = Store::open("/var/lib/hull".as_ref())?;
//! let opts = PullOptions { progress: Progress::auto(), ..Default::default() };
//! let image = store.pull("alpine", &opts)?;
//! let lowerdirs = store.layer_dirs(&image)?; // lowest first: reverse for `lowerdir=`
//! let config = store.config(&image)?;
//! # let _ = (lowerdirs, config); Ok(()) }
//! ```
//!
//! # On disk
//!
//! ```text
//! <root>/images.json              the index: every ImageRecord (names, id, digest, layers…)
//! <root>/blobs/sha256/<hex>       verified blobs: manifests, configs, layer blobs as pulled
//! <root>/layers/<hex>/            a layer unpacked (hex of its diff id: no ':' for lowerdir=)
//! <root>/layers/<hex>.json        its uncompressed size and the blob it came from
//! <root>/tmp/                     partial downloads (<hex>.partial), unpacking, loading
//! <root>/locks/                   flock files: index, gc, blob-<hex>, layer-<hex>
//! ```
//!
//! Nothing half-written is ever visible under `blobs/`, `layers/` or in `images.json`:
//! content is written in `tmp/`, verified, then renamed into place. Pulls, loads and saves
//! hold `locks/gc` shared for their whole run; [`Store::remove`] takes it exclusively before
//! it deletes unreferenced content (so it waits for them). Layer directories hold overlayfs
//! whiteouts (0/0 character devices, `trusted.overlay.opaque=y`), device nodes and setuid
//! files as the image has them: mount overlays of them with `nodev` where that matters, and
//! never follow their symlinks on the host.

// No panics on any input path: errors are returned (tests may unwrap).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod archive;
mod auth;
mod compress;
mod digest;
mod error;
mod lock;
mod manifest;
mod platform;
mod progress;
mod pull;
mod reference;
mod store;
mod unpack;

use std::io::{Read, Write};
use std::path::Path;

pub use auth::{auth_file_path, login, logout};
pub use error::ImageError;
pub use platform::Platform;
pub use progress::Progress;
pub use pull::{verify_login, PullOptions, PARALLEL_DOWNLOADS};
pub use reference::normalize;
pub use store::{ImageRecord, Store};

impl Store {
    /// Pulls `reference` (docker normalization: `alpine` → `docker.io/library/alpine:latest`;
    /// tags and `@sha256:` digests) for `opts.platform` (default: the host's).
    ///
    /// The image is recorded under its tagged name (none when pulled by digest) and under
    /// `repository@<digest the registry served>` in [`ImageRecord::repo_digests`].
    pub fn pull(&self, reference: &str, opts: &PullOptions) -> Result<ImageRecord, ImageError> {
        pull::pull(self, reference, opts)
    }

    /// Loads images from a docker-archive or oci-archive tarball (gzip or zstd compressed
    /// too), as `docker save` / `skopeo copy` write them. `name` tags images the archive
    /// leaves untagged (an OCI layout entry whose `ref.name` is only a tag gets `name:<tag>`
    /// when `name` has no tag of its own).
    pub fn load(
        &self,
        input: &mut dyn Read,
        name: Option<&str>,
    ) -> Result<Vec<ImageRecord>, ImageError> {
        archive::load(self, input, name)
    }

    /// [`Store::load`] from an OCI image layout directory (or an unpacked docker-archive).
    pub fn load_dir(&self, dir: &Path, name: Option<&str>) -> Result<Vec<ImageRecord>, ImageError> {
        archive::load_dir(self, dir, name)
    }

    /// Writes the images as a docker-archive tar that is also an OCI image layout
    /// (`manifest.json` + `index.json`, uncompressed layers), as docker ≥ 25 does.
    /// A reference given by name writes that name only; by id, all the image's names.
    pub fn save(&self, references: &[&str], out: &mut dyn Write) -> Result<(), ImageError> {
        archive::save(self, references, out)
    }
}
