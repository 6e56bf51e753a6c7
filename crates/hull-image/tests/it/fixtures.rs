//! Test images built offline: layer tars written by hand (whiteouts, opaque directories,
//! malicious entries), a busybox rootfs layer from Debian's busybox-static, OCI image
//! layouts, and skopeo.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

pub fn sha256(data: &[u8]) -> String {
    let out = Sha256::digest(data);
    let mut s = String::from("sha256:");
    for b in out.iter() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

pub fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap()
}

/// Panics with an install hint unless `program` is on PATH.
pub fn require(program: &str, package: &str) -> PathBuf {
    hull_testkit::require_program(program, &format!("apt-get install {package}"))
}

// ---- layer tars ------------------------------------------------------------------------

/// A layer tar written entry by entry.
pub struct TarBuilder {
    b: tar::Builder<Vec<u8>>,
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h
}

impl TarBuilder {
    pub fn new() -> Self {
        TarBuilder {
            b: tar::Builder::new(Vec::new()),
        }
    }

    pub fn dir(mut self, path: &str, mode: u32) -> Self {
        let mut h = header(tar::EntryType::Directory, mode, 0);
        self.b.append_data(&mut h, path, std::io::empty()).unwrap();
        self
    }

    pub fn file(self, path: &str, data: &[u8], mode: u32) -> Self {
        self.file_owned(path, data, mode, 0, 0)
    }

    pub fn file_owned(mut self, path: &str, data: &[u8], mode: u32, uid: u64, gid: u64) -> Self {
        let mut h = header(tar::EntryType::Regular, mode, data.len() as u64);
        h.set_uid(uid);
        h.set_gid(gid);
        self.b.append_data(&mut h, path, data).unwrap();
        self
    }

    /// A file with PAX xattr records (`SCHILY.xattr.<name>`).
    pub fn file_xattr(mut self, path: &str, data: &[u8], xattrs: &[(&str, &[u8])]) -> Self {
        let recs: Vec<(String, &[u8])> = xattrs
            .iter()
            .map(|(k, v)| (format!("SCHILY.xattr.{k}"), *v))
            .collect();
        self.b
            .append_pax_extensions(recs.iter().map(|(k, v)| (k.as_str(), *v)))
            .unwrap();
        self.file(path, data, 0o644)
    }

    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut h = header(tar::EntryType::Symlink, 0o777, 0);
        self.b.append_link(&mut h, path, target).unwrap();
        self
    }

    pub fn hardlink(mut self, path: &str, target: &str) -> Self {
        let mut h = header(tar::EntryType::Link, 0o644, 0);
        self.b.append_link(&mut h, path, target).unwrap();
        self
    }

    pub fn device(mut self, path: &str, kind: tar::EntryType, major: u32, minor: u32) -> Self {
        let mut h = header(kind, 0o660, 0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.b.append_data(&mut h, path, std::io::empty()).unwrap();
        self
    }

    /// An entry whose raw name (and link name) bypass the tar crate's path checks, as a
    /// malicious layer would have them.
    pub fn raw(
        mut self,
        name: &[u8],
        kind: tar::EntryType,
        data: &[u8],
        link: Option<&[u8]>,
    ) -> Self {
        let mut h = header(kind, 0o644, data.len() as u64);
        {
            let old = h.as_old_mut();
            old.name.fill(0);
            old.name[..name.len()].copy_from_slice(name);
            if let Some(l) = link {
                old.linkname.fill(0);
                old.linkname[..l.len()].copy_from_slice(l);
            }
        }
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }

    pub fn build(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }
}

/// A layer blob and what a manifest and config say of it.
#[derive(Clone)]
pub struct Layer {
    pub blob: Vec<u8>,
    pub digest: String,
    pub diff_id: String,
    pub media_type: &'static str,
}

impl Layer {
    pub fn plain(tar: Vec<u8>) -> Layer {
        Layer {
            digest: sha256(&tar),
            diff_id: sha256(&tar),
            blob: tar,
            media_type: "application/vnd.oci.image.layer.v1.tar",
        }
    }

    /// gzip-compressed with the `gzip` program.
    pub fn gzip(tar: Vec<u8>) -> Layer {
        require("gzip", "gzip");
        let mut child = Command::new("gzip")
            .args(["-1", "-c", "-n"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let input = tar.clone();
        let writer = std::thread::spawn(move || stdin.write_all(&input).unwrap());
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        assert!(out.status.success());
        Layer {
            digest: sha256(&out.stdout),
            diff_id: sha256(&tar),
            blob: out.stdout,
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip",
        }
    }

    /// zstd-compressed (ruzstd's encoder).
    pub fn zstd(tar: Vec<u8>) -> Layer {
        let blob = ruzstd::encoding::compress_to_vec(
            &tar[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        Layer {
            digest: sha256(&blob),
            diff_id: sha256(&tar),
            blob,
            media_type: "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

/// The busybox root file system (from /bin/busybox) as a gzip layer, built once.
pub fn busybox_layer() -> &'static Layer {
    static L: OnceLock<Layer> = OnceLock::new();
    L.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        hull_testkit::bundle::busybox_rootfs(&root);
        let out = Command::new("tar")
            .arg("--numeric-owner")
            .arg("-C")
            .arg(&root)
            .args(["-cf", "-", "."])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tar: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Layer::gzip(out.stdout)
    })
}

// ---- OCI image layouts -------------------------------------------------------------------

/// An OCI image layout directory being written.
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn new(dir: &Path) -> Layout {
        fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout {
            dir: dir.to_path_buf(),
        }
    }

    pub fn blob(&self, data: &[u8]) -> (String, u64) {
        let d = sha256(data);
        fs::write(self.dir.join("blobs/sha256").join(hex(&d)), data).unwrap();
        (d, data.len() as u64)
    }

    /// Writes config + manifest for `layers`; returns the manifest's descriptor (with
    /// its platform) and the config digest (the image id).
    pub fn image(&self, layers: &[Layer], arch: &str, cmd: &[&str]) -> (Value, String) {
        for l in layers {
            self.blob(&l.blob);
        }
        let config = json!({
            "created": "2024-01-01T00:00:00Z",
            "architecture": arch,
            "os": "linux",
            "config": {
                "Env": ["PATH=/bin:/usr/bin"],
                "Cmd": cmd,
                "WorkingDir": "/",
                "User": "0:0",
                "StopSignal": "SIGTERM",
                "ExposedPorts": {"8080/tcp": {}}
            },
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>()},
            "history": layers.iter().map(|_| json!({"created_by": "hull-image test"})).collect::<Vec<_>>()
        });
        let config_bytes = serde_json::to_vec(&config).unwrap();
        let (config_digest, config_size) = self.blob(&config_bytes);
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
            "layers": layers.iter().map(|l| json!({"mediaType": l.media_type, "digest": l.digest, "size": l.blob.len()})).collect::<Vec<_>>()
        });
        let (md, ms) = self.blob(&serde_json::to_vec(&manifest).unwrap());
        (
            json!({"mediaType": OCI_MANIFEST, "digest": md, "size": ms, "platform": {"os": "linux", "architecture": arch}}),
            config_digest,
        )
    }

    /// An index blob over `entries`; returns its descriptor.
    pub fn index_blob(&self, entries: &[Value]) -> Value {
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries});
        let (d, s) = self.blob(&serde_json::to_vec(&index).unwrap());
        json!({"mediaType": OCI_INDEX, "digest": d, "size": s})
    }

    /// Writes `index.json` with `entries`, each tagged (ref.name) if a tag is given.
    pub fn set_index(&self, entries: &[(Value, Option<&str>)]) {
        let manifests: Vec<Value> = entries
            .iter()
            .map(|(d, tag)| {
                let mut d = d.clone();
                if let Some(t) = tag {
                    d["annotations"] = json!({"org.opencontainers.image.ref.name": t});
                }
                d
            })
            .collect();
        let index = json!({"schemaVersion": 2, "manifests": manifests});
        fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec(&index).unwrap(),
        )
        .unwrap();
    }
}

/// A layout holding one tagged image made of `layers`; returns the image id.
pub fn single_image_layout(dir: &Path, layers: &[Layer], tag: &str) -> String {
    let l = Layout::new(dir);
    let (desc, id) = l.image(layers, "amd64", &["sh"]);
    l.set_index(&[(desc, Some(tag))]);
    id
}

/// `skopeo copy` (quiet, no signature policy) with extra flags; panics with its output.
pub fn skopeo_copy(extra: &[&str], src: &str, dst: &str) {
    let skopeo = require("skopeo", "skopeo");
    let out = Command::new(skopeo)
        .args(["--insecure-policy", "copy", "--quiet"])
        .args(extra)
        .args([src, dst])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo copy {src} {dst} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Lists a directory tree: relative path → (kind, mode, uid, gid, size or link target).
pub fn tree(root: &Path) -> std::collections::BTreeMap<String, String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let what = if m.file_type().is_symlink() {
                format!("link {}", fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                stack.push(p.clone());
                "dir".to_string()
            } else {
                format!(
                    "file {} {}",
                    m.len(),
                    sha256(&fs::read(&p).unwrap_or_default())
                )
            };
            out.insert(
                rel,
                format!("{what} {:o} {}:{}", m.mode(), m.uid(), m.gid()),
            );
        }
    }
    out
}
