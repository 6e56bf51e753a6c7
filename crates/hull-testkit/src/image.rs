//! A busybox container image, built once per test process from Debian's `busybox-static`,
//! in the forms the engines import: an OCI image layout, an oci-archive and a docker-archive.
//!
//! The image has one uncompressed layer (the root filesystem of
//! [`crate::bundle::busybox_rootfs`]) and a config with `PATH` set and `sh` as command.
//! Everything lives in `$TMPDIR/hull-testkit-image-<pid>/`; directories left behind by test
//! processes that are gone are removed when the next one builds its image.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::json;

use crate::command::run;

/// Tag of the single image in the OCI layout and the oci-archive (`org.opencontainers.image.ref.name`).
pub const OCI_TAG: &str = "latest";
/// Name of the image inside the docker-archive (`docker load` makes it this).
pub const DOCKER_ARCHIVE_NAME: &str = "busybox:local";
/// Name under which fixtures import the image into podman, buildah and containerd.
pub const LOCAL_NAME: &str = "localhost/busybox:latest";

const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The busybox image of this test process. Paths stay valid for the whole process.
pub struct BusyboxImage {
    dir: PathBuf,
    oci_archive: OnceLock<PathBuf>,
    docker_archive: OnceLock<PathBuf>,
}

/// The busybox image, built on first use (tarball + OCI layout); archives are made on demand.
pub fn busybox_image() -> &'static BusyboxImage {
    static IMAGE: OnceLock<BusyboxImage> = OnceLock::new();
    IMAGE.get_or_init(BusyboxImage::build)
}

impl BusyboxImage {
    fn build() -> Self {
        let tmp = std::env::temp_dir();
        remove_stale_dirs(&tmp);
        let dir = tmp.join(format!("hull-testkit-image-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();

        let root = dir.join("rootfs");
        crate::bundle::busybox_rootfs(&root);
        let tar = dir.join("rootfs.tar");
        tar_then_remove(&root, &tar);
        write_oci_layout(&tar, &dir.join("oci"));
        Self {
            dir,
            oci_archive: OnceLock::new(),
            docker_archive: OnceLock::new(),
        }
    }

    /// The root filesystem as a plain tar (for `podman import`, `docker import`).
    pub fn rootfs_tar(&self) -> PathBuf {
        self.dir.join("rootfs.tar")
    }

    /// Directory of the OCI image layout; the image is tagged [`OCI_TAG`].
    pub fn oci_layout(&self) -> PathBuf {
        self.dir.join("oci")
    }

    /// `oci:<layout>:latest`, the skopeo/containers-image reference of the layout.
    pub fn oci_ref(&self) -> String {
        format!("oci:{}:{OCI_TAG}", self.oci_layout().display())
    }

    /// An oci-archive whose index names the image [`OCI_TAG`] (`ctr image import --base-name`).
    pub fn oci_archive(&self) -> &Path {
        self.oci_archive.get_or_init(|| {
            let p = self.dir.join("busybox-oci.tar");
            skopeo_copy(
                &self.oci_ref(),
                &format!("oci-archive:{}:{OCI_TAG}", p.display()),
            );
            p
        })
    }

    /// A docker-archive holding [`DOCKER_ARCHIVE_NAME`] (`docker load -i`).
    pub fn docker_archive(&self) -> &Path {
        self.docker_archive.get_or_init(|| {
            let p = self.dir.join("busybox-docker.tar");
            skopeo_copy(
                &self.oci_ref(),
                &format!("docker-archive:{}:{DOCKER_ARCHIVE_NAME}", p.display()),
            );
            p
        })
    }

    /// Copies the image into a containers-storage store (podman, buildah) as `name`.
    pub fn copy_to_containers_storage(
        &self,
        driver: &str,
        root: &Path,
        runroot: &Path,
        name: &str,
    ) {
        skopeo_copy(
            &self.oci_ref(),
            &format!(
                "containers-storage:[{driver}@{}+{}]{name}",
                root.display(),
                runroot.display()
            ),
        );
    }
}

/// Packs the directory `root` into the tar file `tar` (numeric owners, sorted names: the same
/// tree gives the same layer), then removes `root`.
fn tar_then_remove(root: &Path, tar: &Path) {
    run(Command::new("tar")
        .args(["--numeric-owner", "--sort=name", "-C"])
        .arg(root)
        .arg("-cf")
        .arg(tar)
        .arg("."))
    .ok();
    fs::remove_dir_all(root).unwrap();
}

/// `skopeo copy SRC DST`, panicking with skopeo's output on failure.
pub fn skopeo_copy(src: &str, dst: &str) {
    crate::require_program("skopeo", "apt-get install skopeo");
    run(Command::new("skopeo").args(["copy", "--quiet", src, dst])).ok();
}

fn sha256_file(p: &Path) -> String {
    let out = run(Command::new("sha256sum").arg(p)).ok();
    out.stdout
        .split_whitespace()
        .next()
        .expect("sha256sum output")
        .to_string()
}

/// Writes `data` as a blob of `layout`, returning its digest (`sha256:…`) and size.
fn write_blob(layout: &Path, data: &[u8]) -> (String, usize) {
    let tmp = layout.join("blob.tmp");
    fs::write(&tmp, data).unwrap();
    let hex = sha256_file(&tmp);
    fs::rename(&tmp, layout.join("blobs/sha256").join(&hex)).unwrap();
    (format!("sha256:{hex}"), data.len())
}

fn write_oci_layout(layer_tar: &Path, layout: &Path) {
    fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();

    let layer_hex = sha256_file(layer_tar);
    let layer_size = fs::metadata(layer_tar).unwrap().len();
    fs::copy(layer_tar, layout.join("blobs/sha256").join(&layer_hex)).unwrap();
    let layer_digest = format!("sha256:{layer_hex}");

    let config = json!({
        "created": "2024-01-01T00:00:00Z",
        "architecture": oci_arch(),
        "os": "linux",
        "config": {"Env": [PATH_ENV], "Cmd": ["sh"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "hull-testkit busybox_rootfs"}]
    });
    let (config_digest, config_size) = write_blob(layout, &serde_json::to_vec(&config).unwrap());

    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size}]
    });
    let (manifest_digest, manifest_size) =
        write_blob(layout, &serde_json::to_vec(&manifest).unwrap());

    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_size,
            "annotations": {"org.opencontainers.image.ref.name": OCI_TAG}
        }]
    });
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
}

fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Removes `hull-testkit-image-<pid>` directories of processes that no longer exist.
fn remove_stale_dirs(tmp: &Path) {
    let Ok(entries) = fs::read_dir(tmp) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("hull-testkit-image-"))
        else {
            continue;
        };
        if let Ok(pid) = pid.parse::<i32>() {
            if !crate::wait::pid_alive(pid) {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
}

/// An OCI image layout (tag [`OCI_TAG`]) whose tag is a multi-platform image index: one busybox
/// image per architecture of `arches` (OCI names: `amd64` is the host's busybox, others the
/// foreign busybox of `scripts/setup.sh --arch`), each config naming its architecture (and
/// `v7` for `arm`), each with `/etc/platform` holding `linux/<arch>`. Built under `dir`.
pub fn multi_platform_layout(dir: &Path, arches: &[&str]) -> PathBuf {
    let layout = dir.join("oci");
    let _ = fs::remove_dir_all(&layout);
    fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let mut entries = Vec::new();
    for arch in arches {
        let root = dir.join(format!("rootfs-{arch}"));
        let _ = fs::remove_dir_all(&root);
        match *arch {
            "amd64" => crate::bundle::busybox_rootfs(&root),
            a => crate::bundle::busybox_rootfs_with(&root, &crate::bundle::foreign_busybox(a)),
        }
        fs::write(root.join("etc/platform"), format!("linux/{arch}\n")).unwrap();
        let tar = dir.join(format!("layer-{arch}.tar"));
        tar_then_remove(&root, &tar);
        let (layer_digest, layer_size) = write_blob(&layout, &fs::read(&tar).unwrap());
        fs::remove_file(&tar).unwrap();
        let variant = (*arch == "arm").then_some("v7");
        let mut config = json!({
            "created": "2024-01-01T00:00:00Z",
            "architecture": arch,
            "os": "linux",
            "config": {"Env": [PATH_ENV], "Cmd": ["sh"], "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        });
        let mut platform = json!({"architecture": arch, "os": "linux"});
        if let Some(v) = variant {
            config["variant"] = json!(v);
            platform["variant"] = json!(v);
        }
        let (config_digest, config_size) =
            write_blob(&layout, &serde_json::to_vec(&config).unwrap());
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size}]
        });
        let (digest, size) = write_blob(&layout, &serde_json::to_vec(&manifest).unwrap());
        entries.push(json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest, "size": size, "platform": platform
        }));
    }
    let nested = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    });
    let (digest, size) = write_blob(&layout, &serde_json::to_vec(&nested).unwrap());
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": digest, "size": size,
            "annotations": {"org.opencontainers.image.ref.name": OCI_TAG}
        }]
    });
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    layout
}
