//! A foreign-architecture image through a real engine: podman pulls the arm64 image of a
//! multi-platform index from a registry on loopback and runs it with hull-runtime, which reads
//! the architecture off the program's ELF header and runs it emulated in the VM. Opt-in like
//! every foreign-architecture test (`scripts/setup.sh --arch arm64`; `scripts/test.sh` runs it).

use hull_testkit::engines::{Podman, Registry};
use hull_testkit::image::multi_platform_layout;

#[test]
#[ignore = "foreign architectures are opt-in: scripts/setup.sh --arch arm64"]
fn arm64_podman_run_platform_runs_the_arm64_image_in_a_vm() {
    let p = Podman::new();
    let dir = p.dir().join("multi-platform-image");
    std::fs::create_dir_all(&dir).unwrap();
    let layout = multi_platform_layout(&dir, &["amd64", "arm64"]);
    let reg = Registry::start();
    let reference = reg.push_layout_all(&layout, "conformance/multi");
    p.podman(&[
        "pull",
        "--quiet",
        "--tls-verify=false",
        "--platform",
        "linux/arm64",
        &reference,
    ])
    .ok();
    let mut args = vec![
        "run",
        "--rm",
        "--network",
        "none",
        "--platform",
        "linux/arm64",
    ];
    args.extend(Podman::ULIMITS);
    args.extend([
        reference.as_str(),
        "sh",
        "-c",
        "cat /etc/platform; uname -m",
    ]);
    let out = p.podman(&args).ok();
    assert_eq!(out.stdout, "linux/arm64\naarch64\n", "{out}");
}
