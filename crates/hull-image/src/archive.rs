//! `load` and `save`: docker-archive tarballs (`docker save`, `skopeo copy …
//! docker-archive:`), oci-archive tarballs and OCI image layout directories.
//!
//! A tarball is first unpacked into the store's `tmp/` (plain files only; its symlinks and
//! hardlinks, which docker's legacy format uses for shared layers, become hardlinks to the
//! files they name inside the archive), then read like a directory. Every blob is verified
//! against the digest the layout names it by before it enters the store.
//!
//! `save` writes a docker-archive that is an OCI layout at the same time (as docker ≥ 25
//! does): `manifest.json`, `oci-layout`, `index.json`, and `blobs/sha256/…` holding the
//! configs, OCI manifests and uncompressed layers.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::compress::{decompressed, Compression};
use crate::digest::{hex_of, HashingReader};
use crate::error::IoContext;
use crate::manifest::{
    parse_manifest, select_platform, ConfigSummary, Descriptor, ImageManifest, Manifest,
    CONTAINERD_NAME, DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_LAYER_TAR, DOCKER_MANIFEST,
    OCI_CONFIG, OCI_INDEX, OCI_LAYER_TAR, OCI_LAYER_ZSTD, OCI_MANIFEST, REF_NAME,
};
use crate::platform::Platform;
use crate::progress::{Progress, Reporter};
use crate::reference::{ImageRef, DOCKER_HUB};
use crate::store::{hash_file, ImageRecord, Store};
use crate::unpack::components;
use crate::ImageError;

#[derive(Deserialize, Serialize)]
struct DockerEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

#[derive(Deserialize)]
struct OciIndexFile {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

/// Loads images from a tarball (docker-archive or oci-archive; gzip/zstd-compressed too).
pub(crate) fn load(
    store: &Store,
    input: &mut dyn Read,
    name: Option<&str>,
) -> Result<Vec<ImageRecord>, ImageError> {
    let _gc = store.gc_shared()?;
    let dir = store.tmp_path("load");
    fs::create_dir(&dir).ctx("create", &dir)?;
    let result = extract_archive(input, &dir).and_then(|()| load_layout(store, &dir, name, true));
    let _ = fs::remove_dir_all(&dir);
    result
}

/// Loads images from an OCI layout directory (or an unpacked docker-archive).
pub(crate) fn load_dir(
    store: &Store,
    dir: &Path,
    name: Option<&str>,
) -> Result<Vec<ImageRecord>, ImageError> {
    let _gc = store.gc_shared()?;
    load_layout(store, dir, name, false)
}

/// Unpacks the regular files of a tar into `dir`; links become hardlinks of their targets.
fn extract_archive(input: &mut dyn Read, dir: &Path) -> Result<(), ImageError> {
    let bad = |reason: String| ImageError::invalid("archive", "(input)", reason);
    let reader = decompressed(input).map_err(|e| bad(format!("read: {e}")))?;
    let mut archive = tar::Archive::new(reader);
    // (link path, target path), both relative to the archive root.
    let mut links: Vec<(PathBuf, PathBuf)> = Vec::new();
    let entries = archive.entries().map_err(|e| bad(format!("read: {e}")))?;
    let mut any = false;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("read entry: {e}")))?;
        any = true;
        let raw = entry.path_bytes().into_owned();
        let comps = components(&raw)
            .map_err(|r| bad(format!("entry {:?}: {r}", String::from_utf8_lossy(&raw))))?;
        if comps.is_empty() {
            continue;
        }
        let rel: PathBuf = comps.iter().map(|c| OsStr::from_bytes(c)).collect();
        let dest = dir.join(&rel);
        match entry.header().entry_type() {
            tar::EntryType::Directory => fs::create_dir_all(&dest).ctx("create", &dest)?,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if let Some(p) = dest.parent() {
                    fs::create_dir_all(p).ctx("create", p)?;
                }
                let mut f = fs::File::create(&dest).ctx("create", &dest)?;
                io::copy(&mut entry, &mut f).ctx("write", &dest)?;
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let Some(target) = entry.link_name_bytes().map(|t| t.into_owned()) else {
                    continue;
                };
                let is_symlink = entry.header().entry_type() == tar::EntryType::Symlink;
                // A symlink's target is relative to its directory, a hardlink's to the root.
                let mut base: Vec<Vec<u8>> = if is_symlink {
                    comps[..comps.len() - 1]
                        .iter()
                        .map(|c| c.to_vec())
                        .collect()
                } else {
                    Vec::new()
                };
                if target.first() == Some(&b'/') {
                    continue;
                }
                let mut escaped = false;
                for c in target.split(|b| *b == b'/') {
                    match c {
                        b"" | b"." => {}
                        b".." => {
                            if base.pop().is_none() {
                                escaped = true;
                            }
                        }
                        c => base.push(c.to_vec()),
                    }
                }
                if !escaped && !base.is_empty() {
                    let t: PathBuf = base.iter().map(|c| OsStr::from_bytes(c)).collect();
                    links.push((rel, t));
                }
            }
            _ => {}
        }
    }
    if !any {
        return Err(bad("empty archive".to_string()));
    }
    // Links may come before their targets, and may chain.
    for _ in 0..8 {
        let mut progress = false;
        links.retain(|(link, target)| {
            let src = dir.join(target);
            let dst = dir.join(link);
            if src.is_file() && !dst.exists() {
                if let Some(p) = dst.parent() {
                    let _ = fs::create_dir_all(p);
                }
                if fs::hard_link(&src, &dst).is_ok() || fs::copy(&src, &dst).is_ok() {
                    progress = true;
                    return false;
                }
            }
            true
        });
        if !progress {
            break;
        }
    }
    Ok(())
}

/// A file inside the layout; refuses names that leave it.
fn inside(dir: &Path, name: &str) -> Result<PathBuf, ImageError> {
    let comps = components(name.as_bytes()).map_err(|r| {
        ImageError::invalid(
            "archive",
            dir.display().to_string(),
            format!("file name {name:?}: {r}"),
        )
    })?;
    let mut p = dir.to_path_buf();
    for c in comps {
        p.push(OsStr::from_bytes(c));
    }
    Ok(p)
}

struct Loader<'a> {
    store: &'a Store,
    dir: &'a Path,
    /// Files may be moved into the store (they are ours, in its tmp/).
    movable: bool,
    reporter: Reporter,
    /// Files already brought in (a file two images share may have been moved).
    done: std::cell::RefCell<std::collections::HashMap<PathBuf, (String, u64)>>,
}

impl Loader<'_> {
    /// Brings a file of the layout into `blobs/`, verifying `expected` if given.
    fn ingest(
        &self,
        path: &Path,
        expected: Option<(&str, Option<u64>)>,
    ) -> Result<(String, u64), ImageError> {
        if let Some(hit) = self.done.borrow().get(path) {
            if expected.map_or(true, |(d, _)| d == hit.0) {
                return Ok(hit.clone());
            }
        }
        let r = self.ingest_new(path, expected)?;
        self.done.borrow_mut().insert(path.to_path_buf(), r.clone());
        Ok(r)
    }

    fn ingest_new(
        &self,
        path: &Path,
        expected: Option<(&str, Option<u64>)>,
    ) -> Result<(String, u64), ImageError> {
        let origin = path.display().to_string();
        // Already there (e.g. a layer shared by two images of one archive, moved in for the
        // first): verified when it was stored.
        if let Some((d, _)) = expected {
            if self.store.has_blob(d) {
                let size = fs::metadata(self.store.blob_path(d)?)
                    .map(|m| m.len())
                    .unwrap_or(0);
                return Ok((d.to_string(), size));
            }
        }
        if !path.is_file() {
            return Err(ImageError::invalid(
                "archive",
                self.dir.display().to_string(),
                format!(
                    "missing file {}",
                    path.strip_prefix(self.dir).unwrap_or(path).display()
                ),
            ));
        }
        if self.movable {
            let (digest, size) = hash_file(path)?;
            if let Some((exp, exp_size)) = expected {
                hex_of(exp)?;
                if let Some(s) = exp_size.filter(|s| *s != size) {
                    return Err(ImageError::SizeMismatch {
                        digest: exp.to_string(),
                        expected: s,
                        actual: size,
                        origin,
                    });
                }
                if exp != digest {
                    return Err(ImageError::DigestMismatch {
                        digest: exp.to_string(),
                        actual: digest,
                        origin,
                    });
                }
            }
            if !self.store.has_blob(&digest) {
                self.store.commit_blob(path, &digest)?;
            }
            return Ok((digest, size));
        }
        let mut f = fs::File::open(path).ctx("open", path)?;
        self.store.put_blob_reader(&mut f, expected, &origin)
    }

    fn blob_file(&self, digest: &str) -> Result<PathBuf, ImageError> {
        Ok(self.dir.join("blobs/sha256").join(hex_of(digest)?))
    }
}

fn load_layout(
    store: &Store,
    dir: &Path,
    name: Option<&str>,
    movable: bool,
) -> Result<Vec<ImageRecord>, ImageError> {
    let loader = Loader {
        store,
        dir,
        movable,
        reporter: Reporter::new(Progress::Quiet),
        done: Default::default(),
    };
    if dir.join("manifest.json").is_file() {
        load_docker(&loader, name)
    } else if dir.join("index.json").is_file() {
        load_oci(&loader, name)
    } else {
        Err(ImageError::invalid(
            "archive",
            dir.display().to_string(),
            "neither a docker-archive (manifest.json) nor an OCI layout (index.json)",
        ))
    }
}

fn load_docker(l: &Loader<'_>, name: Option<&str>) -> Result<Vec<ImageRecord>, ImageError> {
    let path = l.dir.join("manifest.json");
    let data = fs::read(&path).ctx("read", &path)?;
    let entries: Vec<DockerEntry> = serde_json::from_slice(&data).map_err(|e| {
        ImageError::invalid(
            "docker-archive manifest.json",
            l.dir.display().to_string(),
            e,
        )
    })?;
    let mut out = Vec::new();
    for entry in entries {
        let config_path = inside(l.dir, &entry.config)?;
        let expected = blob_name_digest(&entry.config);
        let (config_digest, config_size) =
            l.ingest(&config_path, expected.as_deref().map(|d| (d, None)))?;
        let config = ConfigSummary::parse(&l.store.read_blob(&config_digest)?, &config_digest)?;
        if config.diff_ids().len() != entry.layers.len() {
            return Err(ImageError::invalid(
                "docker-archive",
                l.dir.display().to_string(),
                format!(
                    "{} lists {} layers but its config {} diff ids",
                    entry.config,
                    entry.layers.len(),
                    config.diff_ids().len()
                ),
            ));
        }
        let mut layers = Vec::new();
        for layer in &entry.layers {
            let p = inside(l.dir, layer)?;
            let expected = blob_name_digest(layer);
            let (digest, size) = l.ingest(&p, expected.as_deref().map(|d| (d, None)))?;
            let media_type = match compression_of(&l.store.blob_path(&digest)?)? {
                Compression::None => DOCKER_LAYER_TAR,
                Compression::Gzip => DOCKER_LAYER_GZIP,
                Compression::Zstd => OCI_LAYER_ZSTD,
            };
            layers.push(json!({"mediaType": media_type, "digest": digest, "size": size}));
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": DOCKER_CONFIG, "digest": config_digest, "size": config_size},
            "layers": layers,
        });
        let bytes = serde_json::to_vec(&manifest)
            .map_err(|e| ImageError::invalid("manifest", "generated", e))?;
        let manifest_digest = l.store.put_blob_bytes(&bytes, None, "generated manifest")?;
        let mut names = Vec::new();
        for t in entry.repo_tags.unwrap_or_default() {
            names.push(tagged_name(&t)?);
        }
        if names.is_empty() {
            if let Some(n) = name {
                names.push(tagged_name(n)?);
            }
        }
        out.push(
            l.store
                .finish_image(&manifest_digest, names, Vec::new(), &l.reporter)?,
        );
    }
    if out.is_empty() {
        return Err(ImageError::invalid(
            "docker-archive",
            l.dir.display().to_string(),
            "no images in manifest.json",
        ));
    }
    Ok(out)
}

/// `blobs/sha256/<hex>` or `<hex>.json`/`<hex>.tar` names carry the digest of the content
/// (docker ≥ 25, skopeo); the legacy `<id>/layer.tar` does not.
fn blob_name_digest(name: &str) -> Option<String> {
    let file = name.rsplit('/').next()?;
    let hex = file.split('.').next()?;
    if crate::digest::is_hex64(hex)
        && (name.starts_with("blobs/sha256/") || file.ends_with(".json") || file.ends_with(".tar"))
    {
        // (A legacy `<id>/layer.tar` has its id as a directory name: not a content digest.)
        Some(format!("sha256:{hex}"))
    } else {
        None
    }
}

fn compression_of(path: &Path) -> Result<Compression, ImageError> {
    let mut head = [0u8; 4];
    let mut f = fs::File::open(path).ctx("open", path)?;
    let mut n = 0;
    while n < head.len() {
        let k = f.read(&mut head[n..]).ctx("read", path)?;
        if k == 0 {
            break;
        }
        n += k;
    }
    Ok(Compression::detect(&head[..n]))
}

/// A name that must carry a tag (`busybox:local` → `docker.io/library/busybox:local`).
fn tagged_name(n: &str) -> Result<String, ImageError> {
    let r = ImageRef::parse(n)?;
    match (r.tagged(), &r.digest) {
        (Some(t), None) => Ok(t),
        _ => Err(ImageError::InvalidReference {
            reference: n.to_string(),
            reason: "an image name needs a tag, not a digest".to_string(),
        }),
    }
}

fn load_oci(l: &Loader<'_>, name: Option<&str>) -> Result<Vec<ImageRecord>, ImageError> {
    let path = l.dir.join("index.json");
    let data = fs::read(&path).ctx("read", &path)?;
    let index: OciIndexFile = serde_json::from_slice(&data)
        .map_err(|e| ImageError::invalid("OCI index.json", l.dir.display().to_string(), e))?;
    let host = Platform::host();
    let mut out = Vec::new();
    for top in &index.manifests {
        // Follow nested indexes down to the host's image.
        let mut desc = top.clone();
        let mut depth = 0;
        let manifest_bytes = loop {
            let p = l.blob_file(&desc.digest)?;
            let (digest, _) = l.ingest(&p, Some((&desc.digest, Some(desc.size))))?;
            let bytes = l.store.read_blob(&digest)?;
            match parse_manifest(&bytes, &desc.digest)? {
                Manifest::Image(_) => break bytes,
                Manifest::Index(entries) => {
                    depth += 1;
                    if depth > 4 {
                        return Err(ImageError::invalid(
                            "OCI layout",
                            l.dir.display().to_string(),
                            "indexes nested too deep",
                        ));
                    }
                    desc = select_platform(&entries, &host)
                        .ok_or_else(|| ImageError::NoMatchingPlatform {
                            reference: format!("{} in {}", top.digest, l.dir.display()),
                            platform: host.to_string(),
                            available: crate::manifest::platforms_of(&entries),
                        })?
                        .clone();
                }
            }
        };
        let m: ImageManifest =
            crate::manifest::parse_image_manifest(&manifest_bytes, &desc.digest)?;
        l.ingest(
            &l.blob_file(&m.config.digest)?,
            Some((&m.config.digest, Some(m.config.size))),
        )?;
        for layer in &m.layers {
            l.ingest(
                &l.blob_file(&layer.digest)?,
                Some((&layer.digest, Some(layer.size))),
            )?;
        }
        let names = oci_names(top, name)?;
        out.push(
            l.store
                .finish_image(&desc.digest, names, Vec::new(), &l.reporter)?,
        );
    }
    if out.is_empty() {
        return Err(ImageError::invalid(
            "OCI layout",
            l.dir.display().to_string(),
            "index.json lists no images",
        ));
    }
    Ok(out)
}

/// The name of an OCI layout entry: `io.containerd.image.name`; else `name` (with the
/// entry's `ref.name` as tag when `name` has none); else a full reference in `ref.name`.
fn oci_names(desc: &Descriptor, name: Option<&str>) -> Result<Vec<String>, ImageError> {
    if let Some(n) = desc.annotation(CONTAINERD_NAME) {
        return Ok(vec![tagged_name(n)?]);
    }
    let ref_name = desc.annotation(REF_NAME);
    if let Some(n) = name {
        let last = n.rsplit('/').next().unwrap_or(n);
        let has_tag = last.contains(':') || n.contains('@');
        if let (false, Some(tag)) = (has_tag, ref_name) {
            if !tag.contains(['/', ':', '@']) {
                if let Ok(t) = tagged_name(&format!("{n}:{tag}")) {
                    return Ok(vec![t]);
                }
            }
        }
        return Ok(vec![tagged_name(n)?]);
    }
    match ref_name {
        Some(r) if r.contains('/') => Ok(vec![tagged_name(r)?]),
        _ => Ok(Vec::new()),
    }
}

/// The familiar form docker writes in `RepoTags` (`busybox:latest`, `user/app:1`).
fn familiar(name: &str) -> String {
    let library = format!("{DOCKER_HUB}/library/");
    let hub = format!("{DOCKER_HUB}/");
    if let Some(rest) = name.strip_prefix(&library) {
        if !rest.contains('/') {
            return rest.to_string();
        }
    }
    name.strip_prefix(&hub).unwrap_or(name).to_string()
}

struct TarOut<'a> {
    tar: tar::Builder<&'a mut dyn Write>,
    written: HashSet<String>,
}

impl TarOut<'_> {
    fn header(size: u64, mode: u32, kind: tar::EntryType) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_size(size);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_entry_type(kind);
        h
    }

    fn dir(&mut self, path: &str) -> Result<(), ImageError> {
        let mut h = Self::header(0, 0o755, tar::EntryType::Directory);
        self.tar
            .append_data(&mut h, path, io::empty())
            .with_ctx(|| format!("write archive entry {path}"))
    }

    fn bytes(&mut self, path: &str, data: &[u8]) -> Result<(), ImageError> {
        let mut h = Self::header(data.len() as u64, 0o644, tar::EntryType::Regular);
        self.tar
            .append_data(&mut h, path, data)
            .with_ctx(|| format!("write archive entry {path}"))
    }

    fn file(&mut self, path: &str, file: &Path) -> Result<(), ImageError> {
        let f = fs::File::open(file).ctx("open", file)?;
        let size = f.metadata().ctx("stat", file)?.len();
        let mut h = Self::header(size, 0o644, tar::EntryType::Regular);
        self.tar
            .append_data(&mut h, path, f)
            .with_ctx(|| format!("write archive entry {path}"))
    }

    /// `blobs/sha256/<hex>` once.
    fn blob_bytes(&mut self, digest: &str, data: &[u8]) -> Result<String, ImageError> {
        let path = format!("blobs/sha256/{}", hex_of(digest)?);
        if self.written.insert(path.clone()) {
            self.bytes(&path, data)?;
        }
        Ok(path)
    }
}

/// Writes the images as a docker-archive that is also an OCI layout.
pub(crate) fn save(
    store: &Store,
    references: &[&str],
    out: &mut dyn Write,
) -> Result<(), ImageError> {
    if references.is_empty() {
        return Err(ImageError::invalid(
            "save request",
            "(none)",
            "no image given",
        ));
    }
    // id → (record, names to write), in the order given.
    let mut images: Vec<(ImageRecord, Vec<String>)> = Vec::new();
    for r in references {
        let rec = store.resolve(r)?;
        let by_name = ImageRef::parse(r)
            .ok()
            .and_then(|p| p.tagged())
            .filter(|n| rec.names.contains(n));
        let names = match by_name {
            Some(n) => vec![n],
            None => rec.names.clone(),
        };
        match images.iter_mut().find(|(x, _)| x.id == rec.id) {
            Some((_, ns)) => {
                for n in names {
                    if !ns.contains(&n) {
                        ns.push(n);
                    }
                }
            }
            None => images.push((rec, names)),
        }
    }
    let _gc = store.gc_shared()?;
    let mut t = TarOut {
        tar: tar::Builder::new(out),
        written: HashSet::new(),
    };
    t.tar.mode(tar::HeaderMode::Deterministic);
    t.dir("blobs/")?;
    t.dir("blobs/sha256/")?;
    let mut docker_manifest = Vec::new();
    let mut index_entries = Vec::new();
    for (rec, names) in &images {
        let config = store.read_blob(&rec.id)?;
        let config_path = t.blob_bytes(&rec.id, &config)?;
        let manifest = store.manifest_of(&rec.digest)?;
        if manifest.layers.len() != rec.layers.len() {
            return Err(ImageError::invalid(
                "image",
                rec.id.clone(),
                "manifest and layers disagree",
            ));
        }
        let mut layer_paths = Vec::new();
        let mut layer_descs = Vec::new();
        for (layer, diff_id) in manifest.layers.iter().zip(&rec.layers) {
            let path = format!("blobs/sha256/{}", hex_of(diff_id)?);
            let size = write_uncompressed_layer(store, &mut t, &layer.digest, diff_id, &path)?;
            layer_paths.push(path);
            layer_descs.push(json!({"mediaType": OCI_LAYER_TAR, "digest": diff_id, "size": size}));
        }
        let oci_manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": rec.id, "size": config.len()},
            "layers": layer_descs,
        });
        let bytes = serde_json::to_vec(&oci_manifest)
            .map_err(|e| ImageError::invalid("manifest", "generated", e))?;
        let digest = crate::digest::sha256_of(&bytes);
        t.blob_bytes(&digest, &bytes)?;
        docker_manifest.push(DockerEntry {
            config: config_path,
            repo_tags: Some(names.iter().map(|n| familiar(n)).collect()),
            layers: layer_paths,
        });
        let platform = json!({"os": rec.platform.os, "architecture": rec.platform.architecture});
        if names.is_empty() {
            index_entries.push(json!({"mediaType": OCI_MANIFEST, "digest": digest, "size": bytes.len(), "platform": platform}));
        }
        for n in names {
            let tag = ImageRef::parse(n)
                .ok()
                .and_then(|r| r.tag)
                .unwrap_or_else(|| "latest".to_string());
            let mut ann = BTreeMap::new();
            ann.insert(CONTAINERD_NAME, n.clone());
            ann.insert(REF_NAME, tag);
            index_entries.push(json!({
                "mediaType": OCI_MANIFEST, "digest": digest, "size": bytes.len(),
                "platform": platform, "annotations": ann,
            }));
        }
    }
    let manifest_json = serde_json::to_vec(&docker_manifest)
        .map_err(|e| ImageError::invalid("manifest.json", "generated", e))?;
    t.bytes("manifest.json", &manifest_json)?;
    t.bytes("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": index_entries});
    let index_json = serde_json::to_vec(&index)
        .map_err(|e| ImageError::invalid("index.json", "generated", e))?;
    t.bytes("index.json", &index_json)?;
    let inner = t
        .tar
        .into_inner()
        .map_err(|e| ImageError::io("finish archive", e))?;
    inner
        .flush()
        .map_err(|e| ImageError::io("write archive", e))?;
    Ok(())
}

/// Adds the uncompressed layer `diff_id` (from blob `blob`) at `path`; returns its size.
fn write_uncompressed_layer(
    store: &Store,
    t: &mut TarOut<'_>,
    blob: &str,
    diff_id: &str,
    path: &str,
) -> Result<u64, ImageError> {
    let blob_path = store.blob_path(blob)?;
    if blob == diff_id {
        let size = fs::metadata(&blob_path).ctx("stat", &blob_path)?.len();
        if t.written.insert(path.to_string()) {
            t.file(path, &blob_path)?;
        }
        return Ok(size);
    }
    // Decompress into a scratch file (a tar entry needs its size first), checking the diff id.
    let tmp = store.tmp_path("save");
    let result = (|| {
        let f = fs::File::open(&blob_path).ctx("open", &blob_path)?;
        let mut r =
            HashingReader::new(decompressed(io::BufReader::new(f)).ctx("read", &blob_path)?);
        let mut out = fs::File::create(&tmp).ctx("create", &tmp)?;
        io::copy(&mut r, &mut out).ctx("decompress", &blob_path)?;
        let size = r.hasher.count;
        let actual = r.hasher.finish();
        if actual != diff_id {
            return Err(ImageError::DigestMismatch {
                digest: diff_id.to_string(),
                actual,
                origin: format!("the uncompressed content of layer {blob}"),
            });
        }
        if t.written.insert(path.to_string()) {
            t.file(path, &tmp)?;
        }
        Ok(size)
    })();
    let _ = fs::remove_file(&tmp);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn familiar_names() {
        assert_eq!(
            familiar("docker.io/library/busybox:latest"),
            "busybox:latest"
        );
        assert_eq!(familiar("docker.io/user/app:1"), "user/app:1");
        assert_eq!(familiar("127.0.0.1:5000/a:b"), "127.0.0.1:5000/a:b");
    }

    #[test]
    fn digest_from_blob_names() {
        let h = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(
            blob_name_digest(&format!("blobs/sha256/{h}")),
            Some(format!("sha256:{h}"))
        );
        assert_eq!(
            blob_name_digest(&format!("{h}.json")),
            Some(format!("sha256:{h}"))
        );
        assert_eq!(
            blob_name_digest(&format!("{h}.tar")),
            Some(format!("sha256:{h}"))
        );
        assert_eq!(blob_name_digest(&format!("{h}/layer.tar")), None);
    }

    #[test]
    fn oci_entry_names() {
        let mut d = Descriptor {
            media_type: OCI_MANIFEST.to_string(),
            digest: String::new(),
            size: 0,
            platform: None,
            annotations: Some(
                [(REF_NAME.to_string(), "v1".to_string())]
                    .into_iter()
                    .collect(),
            ),
            urls: None,
        };
        assert!(oci_names(&d, None).unwrap().is_empty());
        assert_eq!(
            oci_names(&d, Some("app")).unwrap(),
            vec!["docker.io/library/app:v1"]
        );
        assert_eq!(
            oci_names(&d, Some("app:x")).unwrap(),
            vec!["docker.io/library/app:x"]
        );
        d.annotations = Some(
            [(REF_NAME.to_string(), "quay.io/a/b:2".to_string())]
                .into_iter()
                .collect(),
        );
        assert_eq!(oci_names(&d, None).unwrap(), vec!["quay.io/a/b:2"]);
    }
}
