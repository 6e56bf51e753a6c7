//! `hull run` of foreign-architecture images from a real registry on loopback: `--platform`
//! picks the image of a multi-platform index, a foreign-only image runs emulated with one
//! notice line. Opt-in like every foreign-architecture test (`scripts/setup.sh --arch`):
//! `#[ignore]`d in a plain `cargo test`, run by `scripts/test.sh` for the enabled ones.

mod common;

use common::{Hull, VM_TIMEOUT};
use hull_testkit::engines::Registry;
use hull_testkit::image::multi_platform_layout;

/// The foreign architectures the guest directory was built with (`arches`).
fn enabled() -> Vec<String> {
    let dir = std::env::var("HULL_GUEST_DIR").unwrap_or_else(|_| "/usr/local/share/hull".into());
    std::fs::read_to_string(std::path::Path::new(&dir).join("arches"))
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn run(h: &Hull, args: &[&str]) -> hull_testkit::command::Output {
    h.run_with(args, None, VM_TIMEOUT).ok()
}

/// One index of amd64, arm64 and arm/v7 busybox images; `--platform` picks each, no
/// `--platform` picks the host's, and no notice is printed for an asked-for platform.
#[test]
#[ignore = "foreign architectures are opt-in: scripts/setup.sh --arch arm64,arm"]
fn arm64_platform_picks_the_image_of_a_multi_platform_index() {
    // arm/v7 too when the setup enabled it.
    let arm = enabled().contains(&"arm".to_string());
    let arches: &[&str] = if arm {
        &["amd64", "arm64", "arm"]
    } else {
        &["amd64", "arm64"]
    };
    let dir = tempfile::tempdir().unwrap();
    let layout = multi_platform_layout(dir.path(), arches);
    let registry = Registry::start();
    let reference = registry.push_layout_all(&layout, "multi/busybox");
    let script = "cat /etc/platform; uname -m";
    let mut cases = vec![
        ("linux/arm64", "linux/arm64\naarch64\n"),
        ("linux/amd64", "linux/amd64\nx86_64\n"),
    ];
    if arm {
        cases.push(("linux/arm/v7", "linux/arm\narmv7l\n"));
    }
    for (platform, want) in cases {
        let h = Hull::new();
        let out = run(
            &h,
            &[
                "run",
                "--rm",
                "--platform",
                platform,
                &reference,
                "sh",
                "-c",
                script,
            ],
        );
        assert_eq!(out.stdout, want, "{platform}: {out}");
        assert!(!out.stderr.contains("is not the host's"), "{out}");
        h.assert_clean();
    }
    let h = Hull::new();
    let out = run(&h, &["run", "--rm", &reference, "sh", "-c", script]);
    assert_eq!(out.stdout, "linux/amd64\nx86_64\n", "{out}");
    h.assert_clean();
}

/// An index with only an arm64 image, run without `--platform`: pulled, run emulated, one
/// notice line; `--emulation user` is honoured; `hull inspect` shows the architecture.
#[test]
#[ignore = "foreign architectures are opt-in: scripts/setup.sh --arch arm64,arm"]
fn arm64_a_foreign_only_image_runs_emulated_with_one_notice() {
    let dir = tempfile::tempdir().unwrap();
    let layout = multi_platform_layout(dir.path(), &["arm64"]);
    let registry = Registry::start();
    let reference = registry.push_layout_all(&layout, "arm64only/busybox");
    let h = Hull::new();
    let out = run(
        &h,
        &[
            "run",
            "--rm",
            "--emulation",
            "user",
            &reference,
            "uname",
            "-m",
        ],
    );
    assert_eq!(out.stdout, "aarch64\n", "{out}");
    let notices: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("is not the host's"))
        .collect();
    assert_eq!(notices.len(), 1, "{out}");
    assert!(notices[0].contains("linux/arm64"), "{out}");
    let out = run(&h, &["inspect", &reference]);
    assert!(out.stdout.contains("\"Architecture\": \"arm64\""), "{out}");
    h.assert_clean();
}
