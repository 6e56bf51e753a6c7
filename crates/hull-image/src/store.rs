//! The on-disk store (layout in the crate docs): content-addressed blobs, unpacked layers,
//! the names index, locks, garbage collection.

use std::collections::HashSet;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::digest::{hex_of, is_hex64, sha256_of, Hasher, HashingWriter};
use crate::error::IoContext;
use crate::lock::FileLock;
use crate::manifest::{parse_image_manifest, ConfigSummary, ImageManifest};
use crate::platform::Platform;
use crate::progress::{short, Reporter};
use crate::reference::ImageRef;
use crate::unpack::unpack_layer;
use crate::ImageError;

/// A local image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Normalized tagged names (`docker.io/library/alpine:latest`); empty for a dangling image.
    pub names: Vec<String>,
    /// `sha256:…` of the config (docker's image id).
    pub id: String,
    /// `sha256:…` of the (platform-specific) image manifest held in the store.
    pub digest: String,
    /// `repository@sha256:…` references the image was pulled by or is known under (the
    /// digest is the one the registry serves: the index's for a multi-platform image).
    #[serde(default)]
    pub repo_digests: Vec<String>,
    /// The platform of the image (from its config).
    pub platform: Platform,
    /// Uncompressed size of all layers, in bytes.
    pub size: u64,
    /// `created` of the config (RFC 3339), if any.
    pub created: Option<String>,
    /// Diff ids (`sha256:…` of the uncompressed layer tars), lowest layer first.
    pub layers: Vec<String>,
}

#[derive(Default, Serialize, Deserialize)]
pub(crate) struct Index {
    #[serde(default)]
    pub images: Vec<ImageRecord>,
}

#[derive(Serialize, Deserialize)]
struct LayerMeta {
    diff_id: String,
    size: u64,
    blob: String,
}

/// How a reference matched a record.
#[derive(Debug, Clone)]
enum Match {
    Name(String),
    RepoDigest(String),
    Id,
}

/// The image store under one root directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Store {
    /// Opens (creating) a store under `root` (default /var/lib/hull, chosen by the caller).
    pub fn open(root: &Path) -> Result<Store, ImageError> {
        let root = if root.is_absolute() {
            root.to_path_buf()
        } else {
            std::env::current_dir()
                .ctx("resolve store root", root)?
                .join(root)
        };
        for sub in ["blobs/sha256", "layers", "tmp", "locks"] {
            let d = root.join(sub);
            fs::create_dir_all(&d).ctx("create store directory", &d)?;
        }
        Ok(Store { root })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    // ---- paths ------------------------------------------------------------------------

    pub(crate) fn blob_path(&self, digest: &str) -> Result<PathBuf, ImageError> {
        Ok(self.root.join("blobs/sha256").join(hex_of(digest)?))
    }

    pub(crate) fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).map(|p| p.is_file()).unwrap_or(false)
    }

    pub(crate) fn read_blob(&self, digest: &str) -> Result<Vec<u8>, ImageError> {
        let p = self.blob_path(digest)?;
        fs::read(&p).ctx("read blob", &p)
    }

    fn layer_path(&self, diff_id: &str) -> Result<PathBuf, ImageError> {
        Ok(self.root.join("layers").join(hex_of(diff_id)?))
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// A fresh, unused path in `tmp/`.
    pub(crate) fn tmp_path(&self, prefix: &str) -> PathBuf {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        self.tmp_dir()
            .join(format!("{prefix}-{}-{n}-{nanos}", std::process::id()))
    }

    /// Where a blob download in progress is kept (resumed by the next pull).
    pub(crate) fn partial_path(&self, digest: &str) -> Result<PathBuf, ImageError> {
        Ok(self.tmp_dir().join(format!("{}.partial", hex_of(digest)?)))
    }

    pub(crate) fn lock_path(&self, name: &str) -> PathBuf {
        self.root.join("locks").join(format!("{name}.lock"))
    }

    /// Held by pulls and loads for their whole run.
    pub(crate) fn gc_shared(&self) -> Result<FileLock, ImageError> {
        FileLock::shared(&self.lock_path("gc"))
    }

    fn gc_exclusive(&self) -> Result<FileLock, ImageError> {
        FileLock::exclusive(&self.lock_path("gc"))
    }

    // ---- blobs ------------------------------------------------------------------------

    /// Moves a complete, verified file (in this store's `tmp/`) into `blobs/` as `digest`.
    pub(crate) fn commit_blob(&self, tmp: &Path, digest: &str) -> Result<(), ImageError> {
        let dest = self.blob_path(digest)?;
        fs::rename(tmp, &dest).ctx("store blob", &dest)
    }

    /// Stores `data`, verifying it against `expected` if given; returns its digest.
    pub(crate) fn put_blob_bytes(
        &self,
        data: &[u8],
        expected: Option<&str>,
        origin: &str,
    ) -> Result<String, ImageError> {
        let digest = sha256_of(data);
        if let Some(exp) = expected {
            hex_of(exp)?;
            if exp != digest {
                return Err(ImageError::DigestMismatch {
                    digest: exp.to_string(),
                    actual: digest,
                    origin: origin.to_string(),
                });
            }
        }
        if self.has_blob(&digest) {
            return Ok(digest);
        }
        let tmp = self.tmp_path("blob");
        let r = (|| {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(data)?;
            f.sync_all()
        })()
        .ctx("write", &tmp);
        if let Err(e) = r {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        self.commit_blob(&tmp, &digest)?;
        Ok(digest)
    }

    /// Copies `input` into the store, hashing it on the way; verifies it against
    /// `expected` (digest, size) if given. Returns (digest, size).
    pub(crate) fn put_blob_reader(
        &self,
        input: &mut dyn Read,
        expected: Option<(&str, Option<u64>)>,
        origin: &str,
    ) -> Result<(String, u64), ImageError> {
        if let Some((d, _)) = expected {
            hex_of(d)?;
        }
        let tmp = self.tmp_path("blob");
        let result = (|| {
            let f = fs::File::create(&tmp).ctx("create", &tmp)?;
            let mut w = HashingWriter::new(std::io::BufWriter::new(f));
            std::io::copy(input, &mut w)
                .with_ctx(|| format!("copy {origin} to {}", tmp.display()))?;
            let HashingWriter { inner, hasher } = w;
            let f = inner
                .into_inner()
                .map_err(|e| ImageError::io(format!("write {}", tmp.display()), e.into_error()))?;
            f.sync_all().ctx("sync", &tmp)?;
            let size = hasher.count;
            let digest = hasher.finish();
            if let Some((exp, exp_size)) = expected {
                if let Some(s) = exp_size {
                    if s != size {
                        return Err(ImageError::SizeMismatch {
                            digest: exp.to_string(),
                            expected: s,
                            actual: size,
                            origin: origin.to_string(),
                        });
                    }
                }
                if exp != digest {
                    return Err(ImageError::DigestMismatch {
                        digest: exp.to_string(),
                        actual: digest,
                        origin: origin.to_string(),
                    });
                }
            }
            Ok((digest, size))
        })();
        match result {
            Ok((digest, size)) => {
                if self.has_blob(&digest) {
                    let _ = fs::remove_file(&tmp);
                } else {
                    self.commit_blob(&tmp, &digest)?;
                }
                Ok((digest, size))
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    // ---- layers -----------------------------------------------------------------------

    /// Unpacks the layer blob `blob` (whose uncompressed content must hash to `diff_id`)
    /// into `layers/<hex>/` unless it is there already; returns its uncompressed size.
    pub(crate) fn ensure_layer(
        &self,
        blob: &str,
        diff_id: &str,
        reporter: &Reporter,
    ) -> Result<u64, ImageError> {
        let dir = self.layer_path(diff_id)?;
        let hex = hex_of(diff_id)?.to_string();
        if dir.is_dir() {
            return Ok(self.layer_size(diff_id, blob));
        }
        let _lock = FileLock::exclusive(&self.lock_path(&format!("layer-{hex}")))?;
        if dir.is_dir() {
            return Ok(self.layer_size(diff_id, blob));
        }
        let blob_path = self.blob_path(blob)?;
        let tmp = self.tmp_dir().join(format!("layer-{hex}"));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).ctx("remove leftover", &tmp)?;
        }
        fs::create_dir(&tmp).ctx("create", &tmp)?;
        reporter.line(&format!("{}: Extracting", short(blob)));
        let result = (|| {
            let f = fs::File::open(&blob_path).ctx("open blob", &blob_path)?;
            let unpacked = unpack_layer(std::io::BufReader::new(f), &tmp, blob)?;
            if unpacked.diff_id != diff_id {
                return Err(ImageError::DigestMismatch {
                    digest: diff_id.to_string(),
                    actual: unpacked.diff_id,
                    origin: format!("the uncompressed content of layer {blob}"),
                });
            }
            sync_fs(&tmp)?;
            let meta = LayerMeta {
                diff_id: diff_id.to_string(),
                size: unpacked.size,
                blob: blob.to_string(),
            };
            let meta_bytes = serde_json::to_vec(&meta)
                .map_err(|e| ImageError::invalid("layer metadata", diff_id, e))?;
            self.write_atomic(
                &self.root.join("layers").join(format!("{hex}.json")),
                &meta_bytes,
            )?;
            fs::rename(&tmp, &dir).ctx("store layer", &dir)?;
            reporter.line(&format!("{}: Pull complete", short(blob)));
            Ok(unpacked.size)
        })();
        if result.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        result
    }

    fn layer_size(&self, diff_id: &str, blob: &str) -> u64 {
        let meta = hex_of(diff_id)
            .ok()
            .and_then(|hex| fs::read(self.root.join("layers").join(format!("{hex}.json"))).ok())
            .and_then(|b| serde_json::from_slice::<LayerMeta>(&b).ok());
        match meta {
            Some(m) => m.size,
            None => self
                .blob_path(blob)
                .ok()
                .and_then(|p| fs::metadata(p).ok())
                .map_or(0, |m| m.len()),
        }
    }

    /// After the manifest, config and layer blobs of an image are in `blobs/`: unpacks its
    /// layers and records it under `names` (tagged names) and `repo_digests`.
    pub(crate) fn finish_image(
        &self,
        manifest_digest: &str,
        names: Vec<String>,
        repo_digests: Vec<String>,
        reporter: &Reporter,
    ) -> Result<ImageRecord, ImageError> {
        let manifest = self.manifest_of(manifest_digest)?;
        let config_digest = manifest.config.digest.clone();
        let config = ConfigSummary::parse(&self.read_blob(&config_digest)?, &config_digest)?;
        let diff_ids = config.diff_ids().to_vec();
        if diff_ids.len() != manifest.layers.len() {
            return Err(ImageError::invalid(
                "image",
                manifest_digest,
                format!(
                    "the manifest has {} layers but the config {} diff ids",
                    manifest.layers.len(),
                    diff_ids.len()
                ),
            ));
        }
        let mut size = 0;
        for (layer, diff_id) in manifest.layers.iter().zip(&diff_ids) {
            size += self.ensure_layer(&layer.digest, diff_id, reporter)?;
        }
        let record = ImageRecord {
            names,
            id: config_digest,
            digest: manifest_digest.to_string(),
            repo_digests,
            platform: config.platform(),
            size,
            created: config.created.clone(),
            layers: diff_ids,
        };
        self.register(record)
    }

    pub(crate) fn manifest_of(&self, manifest_digest: &str) -> Result<ImageManifest, ImageError> {
        parse_image_manifest(&self.read_blob(manifest_digest)?, manifest_digest)
    }

    // ---- index ------------------------------------------------------------------------

    fn index_path(&self) -> PathBuf {
        self.root.join("images.json")
    }

    pub(crate) fn read_index(&self) -> Result<Index, ImageError> {
        let p = self.index_path();
        match fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| ImageError::invalid("image index", p.display().to_string(), e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Index::default()),
            Err(e) => Err(ImageError::io(format!("read {}", p.display()), e)),
        }
    }

    /// Read-modify-write of the index under its lock; the new index replaces the old
    /// atomically.
    fn update_index<T>(
        &self,
        f: impl FnOnce(&mut Index) -> Result<T, ImageError>,
    ) -> Result<T, ImageError> {
        let _lock = FileLock::exclusive(&self.lock_path("index"))?;
        let mut index = self.read_index()?;
        let out = f(&mut index)?;
        let data = serde_json::to_vec_pretty(&index)
            .map_err(|e| ImageError::invalid("image index", "images.json", e))?;
        self.write_atomic(&self.index_path(), &data)?;
        Ok(out)
    }

    /// Writes `data` to `path` through a temp file, fsync, rename, fsync of the directory.
    pub(crate) fn write_atomic(&self, path: &Path, data: &[u8]) -> Result<(), ImageError> {
        let tmp = self.tmp_path("write");
        let r = (|| {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
            fs::rename(&tmp, path)?;
            if let Some(dir) = path.parent() {
                fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        })();
        if r.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        r.ctx("write", path)
    }

    /// Adds (or merges) a record: its names move to it from any other image.
    pub(crate) fn register(&self, record: ImageRecord) -> Result<ImageRecord, ImageError> {
        self.update_index(|index| {
            for other in index.images.iter_mut().filter(|i| i.id != record.id) {
                other.names.retain(|n| !record.names.contains(n));
                other
                    .repo_digests
                    .retain(|n| !record.repo_digests.contains(n));
            }
            if let Some(existing) = index.images.iter_mut().find(|i| i.id == record.id) {
                for n in &record.names {
                    if !existing.names.contains(n) {
                        existing.names.push(n.clone());
                    }
                }
                for d in &record.repo_digests {
                    if !existing.repo_digests.contains(d) {
                        existing.repo_digests.push(d.clone());
                    }
                }
                existing.digest = record.digest.clone();
                existing.platform = record.platform.clone();
                existing.size = record.size;
                existing.created = record.created.clone();
                existing.layers = record.layers.clone();
                Ok(existing.clone())
            } else {
                index.images.push(record.clone());
                Ok(record)
            }
        })
    }

    // ---- queries ----------------------------------------------------------------------

    /// Local images.
    pub fn images(&self) -> Result<Vec<ImageRecord>, ImageError> {
        Ok(self.read_index()?.images)
    }

    /// A local image by name (normalized the same way), full id, or unique id prefix.
    pub fn resolve(&self, reference: &str) -> Result<ImageRecord, ImageError> {
        let index = self.read_index()?;
        let (i, _) = find(&index, reference)?;
        Ok(index.images[i].clone())
    }

    /// Adds `name` (normalized) to the image `reference` resolves to, taking it from any
    /// other image (`docker tag`).
    pub fn tag(&self, reference: &str, name: &str) -> Result<ImageRecord, ImageError> {
        let parsed = ImageRef::parse(name)?;
        let Some(tagged) = parsed.tagged().filter(|_| parsed.digest.is_none()) else {
            return Err(ImageError::InvalidReference {
                reference: name.to_string(),
                reason: "a tag name cannot hold a digest".to_string(),
            });
        };
        self.update_index(|index| {
            let (i, _) = find(index, reference)?;
            let id = index.images[i].id.clone();
            for other in index.images.iter_mut().filter(|r| r.id != id) {
                other.names.retain(|n| *n != tagged);
            }
            let rec = &mut index.images[i];
            if !rec.names.contains(&tagged) {
                rec.names.push(tagged.clone());
            }
            Ok(rec.clone())
        })
    }

    /// The image's OCI config (Entrypoint, Cmd, Env, WorkingDir, User, ExposedPorts,
    /// StopSignal…).
    pub fn config(
        &self,
        image: &ImageRecord,
    ) -> Result<oci_spec::image::ImageConfiguration, ImageError> {
        let data = self.read_blob(&image.id)?;
        serde_json::from_slice(&data)
            .map_err(|e| ImageError::invalid("image config", image.id.clone(), e))
    }

    /// Unpacked read-only layer directories, lowest first (overlayfs wants them the other way
    /// round in `lowerdir=`). A layer directory that went missing is unpacked again from its
    /// blob. A layer the image holds twice (e.g. two empty layers) is listed once, at its
    /// highest position: the same view, and overlayfs refuses a lowerdir given twice.
    pub fn layer_dirs(&self, image: &ImageRecord) -> Result<Vec<PathBuf>, ImageError> {
        let mut dirs = Vec::with_capacity(image.layers.len());
        let mut manifest: Option<ImageManifest> = None;
        for (i, diff_id) in image.layers.iter().enumerate() {
            let dir = self.layer_path(diff_id)?;
            if !dir.is_dir() {
                if manifest.is_none() {
                    manifest = Some(self.manifest_of(&image.digest)?);
                }
                let blob = manifest
                    .as_ref()
                    .and_then(|m| m.layers.get(i))
                    .map(|l| l.digest.clone())
                    .ok_or_else(|| {
                        ImageError::invalid(
                            "image",
                            image.id.clone(),
                            "manifest and layers disagree",
                        )
                    })?;
                let _gc = self.gc_shared()?;
                self.ensure_layer(&blob, diff_id, &Reporter::new(crate::Progress::Quiet))?;
            }
            dirs.push(dir);
        }
        let mut seen = HashSet::new();
        let mut top_first: Vec<PathBuf> = dirs
            .into_iter()
            .rev()
            .filter(|d| seen.insert(d.clone()))
            .collect();
        top_first.reverse();
        Ok(top_first)
    }

    // ---- removal ----------------------------------------------------------------------

    /// Removes a name (and the image's blobs/layers when no name is left). `in_use` images
    /// (the caller says which ids containers use) are refused unless `force`; forced, an
    /// in-use image loses its names but keeps its content (dangling, like docker).
    ///
    /// Returns docker's lines: `Untagged: <name>` for each name removed, `Deleted: <id>` for
    /// the image and `Deleted: <diff id>` for each layer removed.
    pub fn remove(
        &self,
        reference: &str,
        in_use: &[String],
        force: bool,
    ) -> Result<Vec<String>, ImageError> {
        let _gc = self.gc_exclusive()?;
        let (lines, deleted) = self.update_index(|index| {
            let (i, how) = find(index, reference)?;
            let rec = index.images[i].clone();
            let used = in_use
                .iter()
                .any(|u| u == &rec.id || rec.id.strip_prefix("sha256:") == Some(u.as_str()));
            let would_delete = match &how {
                Match::Name(_) => rec.names.len() <= 1,
                Match::RepoDigest(_) => rec.names.is_empty() && rec.repo_digests.len() <= 1,
                Match::Id => true,
            };
            let mut lines = Vec::new();
            let untag_all = |rec: &mut ImageRecord, lines: &mut Vec<String>| {
                for n in rec.names.drain(..) {
                    lines.push(format!("Untagged: {n}"));
                }
                for d in rec.repo_digests.drain(..) {
                    lines.push(format!("Untagged: {d}"));
                }
            };
            if would_delete && used {
                if !force {
                    return Err(ImageError::InUse {
                        reference: reference.to_string(),
                        id: rec.id.clone(),
                    });
                }
                untag_all(&mut index.images[i], &mut lines);
                return Ok((lines, false));
            }
            if would_delete {
                let mut rec = index.images.remove(i);
                untag_all(&mut rec, &mut lines);
                lines.push(format!("Deleted: {}", rec.id));
                return Ok((lines, true));
            }
            lines.push(format!("Untagged: {}", name_of(&how, reference)));
            let rec = &mut index.images[i];
            match how {
                Match::Name(n) => rec.names.retain(|x| *x != n),
                Match::RepoDigest(d) => rec.repo_digests.retain(|x| *x != d),
                Match::Id => {}
            }
            Ok((lines, false))
        })?;
        let mut lines = lines;
        if deleted {
            let index = self.read_index()?;
            for layer in self.collect_garbage(&index)? {
                lines.push(format!("Deleted: {layer}"));
            }
        }
        Ok(lines)
    }

    /// Deletes every blob and layer no image of `index` references, and the scratch files
    /// in `tmp/`. Called with the gc lock held exclusively. Returns deleted diff ids.
    fn collect_garbage(&self, index: &Index) -> Result<Vec<String>, ImageError> {
        let mut keep_blobs: HashSet<String> = HashSet::new();
        let mut keep_layers: HashSet<String> = HashSet::new();
        for rec in &index.images {
            for d in [&rec.digest, &rec.id] {
                if let Ok(h) = hex_of(d) {
                    keep_blobs.insert(h.to_string());
                }
            }
            if let Ok(m) = self.manifest_of(&rec.digest) {
                for l in &m.layers {
                    if let Ok(h) = hex_of(&l.digest) {
                        keep_blobs.insert(h.to_string());
                    }
                }
            }
            for l in &rec.layers {
                if let Ok(h) = hex_of(l) {
                    keep_layers.insert(h.to_string());
                }
            }
        }
        let blobs = self.root.join("blobs/sha256");
        for e in fs::read_dir(&blobs).ctx("list", &blobs)?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !keep_blobs.contains(&name) {
                let _ = fs::remove_file(e.path());
            }
        }
        let layers = self.root.join("layers");
        let mut deleted = Vec::new();
        for e in fs::read_dir(&layers).ctx("list", &layers)?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let hex = name.strip_suffix(".json").unwrap_or(&name);
            if is_hex64(hex) && keep_layers.contains(hex) {
                continue;
            }
            let p = e.path();
            if p.is_dir() {
                fs::remove_dir_all(&p).ctx("remove layer", &p)?;
                if is_hex64(hex) {
                    deleted.push(format!("sha256:{hex}"));
                }
            } else {
                let _ = fs::remove_file(&p);
            }
        }
        // No pull or load runs now (they hold the gc lock shared): scratch files and the
        // per-blob/per-layer lock files are unused.
        let tmp = self.tmp_dir();
        for e in fs::read_dir(&tmp).ctx("list", &tmp)?.flatten() {
            let p = e.path();
            if p.is_dir() {
                let _ = fs::remove_dir_all(&p);
            } else {
                let _ = fs::remove_file(&p);
            }
        }
        let locks = self.root.join("locks");
        for e in fs::read_dir(&locks).ctx("list", &locks)?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("blob-") || name.starts_with("layer-") {
                let _ = fs::remove_file(e.path());
            }
        }
        Ok(deleted)
    }
}

fn name_of(how: &Match, reference: &str) -> String {
    match how {
        Match::Name(n) | Match::RepoDigest(n) => n.clone(),
        Match::Id => reference.to_string(),
    }
}

/// Finds the record `reference` names: a full id (`sha256:<hex>` or `<hex>`), a name, a
/// `repo@digest`, or a unique id prefix.
fn find(index: &Index, reference: &str) -> Result<(usize, Match), ImageError> {
    let not_found = || ImageError::NotFound {
        reference: reference.to_string(),
    };
    let bare = reference.strip_prefix("sha256:").unwrap_or(reference);
    if is_hex64(bare) {
        let id = format!("sha256:{bare}");
        return index
            .images
            .iter()
            .position(|r| r.id == id)
            .map(|i| (i, Match::Id))
            .ok_or_else(not_found);
    }
    if let Ok(r) = ImageRef::parse(reference) {
        if let Some(d) = &r.digest {
            let rd = r.with_digest(d);
            if let Some(i) = index
                .images
                .iter()
                .position(|x| x.repo_digests.contains(&rd))
            {
                return Ok((i, Match::RepoDigest(rd)));
            }
            // The manifest digest itself under one of the image's repositories.
            let repo = r.repository();
            if let Some(i) = index.images.iter().position(|x| {
                x.digest == *d
                    && (x.names.iter().chain(&x.repo_digests)).any(|n| {
                        n.starts_with(&repo)
                            && matches!(n.as_bytes().get(repo.len()), Some(b':') | Some(b'@'))
                    })
            }) {
                let rd = index.images[i]
                    .repo_digests
                    .iter()
                    .find(|n| n.starts_with(&repo))
                    .cloned()
                    .unwrap_or(rd);
                return Ok((i, Match::RepoDigest(rd)));
            }
        } else if let Some(name) = r.tagged() {
            if let Some(i) = index.images.iter().position(|x| x.names.contains(&name)) {
                return Ok((i, Match::Name(name)));
            }
        }
    }
    let prefix_ok =
        !bare.is_empty() && bare.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if prefix_ok {
        let hits: Vec<usize> = index
            .images
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                r.id.strip_prefix("sha256:")
                    .is_some_and(|h| h.starts_with(bare))
            })
            .map(|(i, _)| i)
            .collect();
        match hits.len() {
            0 => {}
            1 => return Ok((hits[0], Match::Id)),
            _ => {
                return Err(ImageError::Ambiguous {
                    reference: reference.to_string(),
                    ids: hits.iter().map(|i| index.images[*i].id.clone()).collect(),
                })
            }
        }
    }
    Err(not_found())
}

/// `syncfs` of the file system holding `dir` (one call instead of an fsync per file).
fn sync_fs(dir: &Path) -> Result<(), ImageError> {
    let f = fs::File::open(dir).ctx("open", dir)?;
    // SAFETY: syncfs on a valid fd.
    if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
        return Err(ImageError::io(
            format!("sync {}", dir.display()),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Hash of a file's content (for loads).
pub(crate) fn hash_file(path: &Path) -> Result<(String, u64), ImageError> {
    let mut f = fs::File::open(path).ctx("open", path)?;
    let mut h = Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf).ctx("read", path)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let size = h.count;
    Ok((h.finish(), size))
}
