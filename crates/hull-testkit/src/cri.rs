//! containerd's CRI plugin (the Kubernetes path, without kubelet) in a private containerd:
//! its configuration, a local sandbox ("pause") image and the CNI network of the test.
//!
//! The fixture itself is [`crate::engines::Containerd::start_cri`]; the gRPC client lives in
//! the tests (the `k8s-cri` crate over the unix socket), so this crate pulls in no async stack.
//!
//! What the CRI plugin is given:
//! - `sandbox_image` = [`PAUSE_IMAGE`]: the busybox image with `sleep 1000000` as its command,
//!   built offline and imported into the `k8s.io` namespace (nothing is ever pulled);
//! - one runtime handler, [`RUNTIME_HANDLER`] (`io.containerd.runc.v2` whose `BinaryName` is
//!   the traced runtime under test), also the default runtime;
//! - CNI: plugins from Debian's `containernetworking-plugins` (`/usr/lib/cni`), a conflist in
//!   the fixture's own directory: `bridge` (the test's own bridge name and /24, gateway on the
//!   bridge, no masquerading, so no firewall rules) with `host-local` IPAM whose state is in
//!   the fixture's directory; containerd adds `loopback` itself;
//! - network namespaces bound under its own state directory (`netns_mounts_under_state_dir`),
//!   not `/var/run/netns`, so nothing outlives the fixture's directory.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{json, Value};

use crate::command::run;
use crate::image::{busybox_image, skopeo_copy, OCI_TAG};
use crate::net::TestNet;
use crate::require_program;

/// The CRI plugin's namespace in containerd.
pub const NAMESPACE: &str = "k8s.io";
/// The runtime handler (`RunPodSandboxRequest.runtime_handler`) of the runtime under test.
pub const RUNTIME_HANDLER: &str = "hull";
/// Name of the sandbox image (a busybox whose command is `sleep 1000000`).
pub const PAUSE_IMAGE: &str = "localhost/hull-pause:latest";
/// Base name (`ctr image import --base-name`) of [`PAUSE_IMAGE`].
const PAUSE_BASE_NAME: &str = "localhost/hull-pause";
/// Where Debian's `containernetworking-plugins` installs the CNI plugins.
pub const CNI_BIN_DIR: &str = "/usr/lib/cni";

/// The sandbox image as an oci-archive tagged [`OCI_TAG`], built once per test process from
/// the busybox image: same layer, config `Cmd` = `["sleep", "1000000"]`.
pub fn pause_image_archive() -> &'static Path {
    static ARCHIVE: OnceLock<PathBuf> = OnceLock::new();
    ARCHIVE.get_or_init(|| {
        let base = busybox_image().oci_layout();
        let dir = base.parent().unwrap().join("pause");
        let _ = fs::remove_dir_all(&dir);
        let layout = dir.join("oci");
        derive_layout(
            &base,
            &layout,
            json!(["sleep", "1000000"]),
            "hull-testkit pause",
        );
        let archive = dir.join("pause-oci.tar");
        skopeo_copy(
            &format!("oci:{}:{OCI_TAG}", layout.display()),
            &format!("oci-archive:{}:{OCI_TAG}", archive.display()),
        );
        archive
    })
}

/// Copies the single-image OCI layout `from` to `to`, replacing the config's `Cmd`.
fn derive_layout(from: &Path, to: &Path, cmd: Value, created_by: &str) {
    let blob = |digest: &str| {
        from.join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let read_json =
        |p: PathBuf| -> Value { serde_json::from_slice(&fs::read(&p).unwrap()).unwrap() };
    let index = read_json(from.join("index.json"));
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
    let mut manifest = read_json(blob(&manifest_digest));
    let config_digest = manifest["config"]["digest"].as_str().unwrap().to_owned();
    let mut config = read_json(blob(&config_digest));

    fs::create_dir_all(to.join("blobs/sha256")).unwrap();
    fs::copy(from.join("oci-layout"), to.join("oci-layout")).unwrap();
    for layer in manifest["layers"].as_array().unwrap() {
        let d = layer["digest"].as_str().unwrap();
        let dst = to
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"));
        if fs::hard_link(blob(d), &dst).is_err() {
            fs::copy(blob(d), &dst).unwrap();
        }
    }
    config["config"]["Cmd"] = cmd;
    config["history"].as_array_mut().unwrap().push(
        json!({"created": "2024-01-01T00:00:00Z", "created_by": created_by, "empty_layer": true}),
    );
    let (digest, size) = write_blob(to, &serde_json::to_vec(&config).unwrap());
    manifest["config"]["digest"] = digest.into();
    manifest["config"]["size"] = size.into();
    let (digest, size) = write_blob(to, &serde_json::to_vec(&manifest).unwrap());
    let mut index = index;
    index["manifests"][0]["digest"] = digest.into();
    index["manifests"][0]["size"] = size.into();
    fs::write(to.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

/// Writes `data` as a blob of `layout`; its digest (`sha256:…`) and size.
fn write_blob(layout: &Path, data: &[u8]) -> (String, usize) {
    let tmp = layout.join("blob.tmp");
    fs::write(&tmp, data).unwrap();
    let out = run(Command::new("sha256sum").arg(&tmp)).ok();
    let hex = out.stdout.split_whitespace().next().unwrap().to_owned();
    fs::rename(&tmp, layout.join("blobs/sha256").join(&hex)).unwrap();
    (format!("sha256:{hex}"), data.len())
}

/// The CRI part of a private containerd: its network and directories.
#[derive(Debug)]
pub struct CriSetup {
    net: TestNet,
    conf_dir: PathBuf,
    ipam_dir: PathBuf,
    log_dir: PathBuf,
}

impl CriSetup {
    /// Reserves a network and writes the CNI conflist under `dir` (the containerd fixture's
    /// private directory).
    pub fn new(dir: &Path) -> Self {
        for plugin in ["bridge", "host-local", "loopback"] {
            assert!(
                Path::new(CNI_BIN_DIR).join(plugin).is_file(),
                "CNI plugin {CNI_BIN_DIR}/{plugin} missing: apt-get install containernetworking-plugins"
            );
        }
        require_program("ip", "apt-get install iproute2");
        let net = TestNet::allocate('c');
        let conf_dir = dir.join("cni/net.d");
        let ipam_dir = dir.join("cni/ipam");
        let log_dir = dir.join("pod-logs");
        for d in [&conf_dir, &ipam_dir, &log_dir] {
            fs::create_dir_all(d).unwrap();
        }
        let conflist = json!({
            "cniVersion": "0.4.0",
            "name": net.name(),
            "plugins": [{
                "type": "bridge",
                "bridge": net.bridge(),
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": false,
                "ipam": {
                    "type": "host-local",
                    "dataDir": ipam_dir,
                    "ranges": [[{"subnet": net.subnet(), "gateway": net.gateway()}]]
                }
            }]
        });
        fs::write(
            conf_dir.join("10-hull-test.conflist"),
            serde_json::to_vec_pretty(&conflist).unwrap(),
        )
        .unwrap();
        Self {
            net,
            conf_dir,
            ipam_dir,
            log_dir,
        }
    }

    /// The test's network: the CNI bridge and its /24.
    pub fn net(&self) -> &TestNet {
        &self.net
    }

    /// Directory of the CNI conflist.
    pub fn conf_dir(&self) -> &Path {
        &self.conf_dir
    }

    /// host-local's state (one file per allocated address).
    pub fn ipam_dir(&self) -> &Path {
        &self.ipam_dir
    }

    /// A directory for `PodSandboxConfig.log_directory`.
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// The `[plugins."io.containerd.grpc.v1.cri"]` section of containerd's config (version 2).
    pub fn config_toml(&self, runtime: &Path, runc_root: &Path) -> String {
        format!(
            r#"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_tls_streaming = false

[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "{RUNTIME_HANDLER}"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{RUNTIME_HANDLER}]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{RUNTIME_HANDLER}.options]
  BinaryName = "{runtime}"
  Root = "{runc_root}"

[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "{CNI_BIN_DIR}"
  conf_dir = "{conf_dir}"
  max_conf_num = 1
"#,
            runtime = runtime.display(),
            runc_root = runc_root.display(),
            conf_dir = self.conf_dir.display(),
        )
    }

    /// Base name under which [`pause_image_archive`] is imported (`--base-name`).
    pub fn pause_base_name() -> &'static str {
        PAUSE_BASE_NAME
    }
}
