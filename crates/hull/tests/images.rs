//! The image commands: load, images, inspect, tag, save, rmi (refused for an image a
//! container uses); help and version.

mod common;

use serde_json::Value;

use common::{busybox_layout, Hull, QUICK};

#[test]
fn load_list_inspect_tag_save_and_remove_images() {
    let h = Hull::new();
    let layout = busybox_layout();
    let out = h
        .run_with(
            &["load", "-i", layout.to_str().unwrap(), "--name", "busybox"],
            None,
            QUICK,
        )
        .ok();
    assert_eq!(
        out.stdout, "Loaded image: docker.io/library/busybox:latest\n",
        "{out}"
    );

    let out = h.run_with(&["images"], None, QUICK).ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines[0].starts_with("REPOSITORY   TAG      IMAGE ID"),
        "{out}"
    );
    assert!(lines[1].starts_with("busybox      latest   "), "{out}");
    let out = h
        .run_with(&["images", "--format", "json"], None, QUICK)
        .ok();
    let v: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(v["Repository"], "busybox", "{v}");
    let short = v["ID"].as_str().unwrap().to_string();
    assert_eq!(short.len(), 12);

    let out = h.run_with(&["inspect", "busybox"], None, QUICK).ok();
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        v[0]["RepoTags"][0], "docker.io/library/busybox:latest",
        "{v}"
    );
    assert_eq!(v[0]["Config"]["Cmd"][0], "sh", "{v}");
    assert!(v[0]["Id"].as_str().unwrap().contains(&short), "{v}");

    h.run_with(&["tag", "busybox", "mybox:1"], None, QUICK).ok();
    let out = h.run_with(&["images"], None, QUICK).ok();
    assert!(out.stdout.contains("mybox        1 "), "{out}");

    // save → load into another root.
    let tar = h.root().join("saved.tar");
    h.run_with(
        &["save", "-o", tar.to_str().unwrap(), "mybox:1"],
        None,
        QUICK,
    )
    .ok();
    let other = Hull::new();
    let out = other
        .run_with(&["load", "-i", tar.to_str().unwrap()], None, QUICK)
        .ok();
    assert_eq!(
        out.stdout, "Loaded image: docker.io/library/mybox:1\n",
        "{out}"
    );
    let out = other
        .run_with(&["load"], Some(&std::fs::read(&tar).unwrap()), QUICK)
        .ok();
    assert!(out.stdout.contains("mybox:1"), "{out}");

    // An image a container uses is kept unless forced (removing one of two names is fine).
    h.ok(&["run", "--name", "user", "busybox", "true"]);
    let out = h.run_with(&["rmi", "mybox:1"], None, QUICK).ok();
    assert_eq!(out.stdout, "Untagged: docker.io/library/mybox:1\n", "{out}");
    let out = h.run_with(&["rmi", "busybox"], None, QUICK);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stderr.contains("in use"), "{out}");
    h.ok(&["rm", "user"]);
    let out = h.run_with(&["rmi", "busybox"], None, QUICK).ok();
    assert!(out.stdout.contains("Deleted: sha256:"), "{out}");
    let out = h.run_with(&["images", "-q"], None, QUICK).ok();
    assert_eq!(out.stdout, "", "{out}");
    h.assert_clean();
}

#[test]
fn every_command_has_help_with_an_example_and_version_names_the_runtime() {
    let h = Hull::new();
    for sub in [
        "run", "ps", "exec", "logs", "stop", "kill", "rm", "pull", "images", "rmi", "tag",
        "inspect", "load", "save", "login", "logout", "version",
    ] {
        let out = h.run_with(&[sub, "--help"], None, QUICK).ok();
        assert!(out.stdout.contains("Examples:\n  hull "), "{sub}: {out}");
    }
    let out = h.run_with(&["--help"], None, QUICK).ok();
    assert!(out.stdout.contains("Examples:"), "{out}");
    let out = h.run_with(&["version"], None, QUICK).ok();
    assert!(out.stdout.contains("hull-runtime:  hull-runtime "), "{out}");
}

/// The whole path from a registry: `hull pull` from a real registry on loopback (Debian's
/// docker-registry, the image pushed with skopeo), then `hull run` of the pulled image, and
/// `hull run` pulling by itself when the image is missing.
#[test]
fn pull_from_a_registry_then_run_the_pulled_image() {
    let registry = hull_testkit::engines::Registry::start();
    let reference = registry.push_busybox("pulled/busybox");
    let h = Hull::new();
    let out = h
        .run_with(&["pull", &reference], None, common::VM_TIMEOUT)
        .ok();
    assert!(out.stdout.contains(&reference), "{out}");
    let images = h
        .run_with(&["images", "--format", "json"], None, QUICK)
        .ok();
    assert!(images.stdout.contains("pulled/busybox"), "{images}");
    let out = h.ok(&["run", "--rm", &reference, "echo", "from-the-registry"]);
    assert_eq!(out.stdout, "from-the-registry\n", "{out}");

    let h2 = Hull::new();
    let out = h2.ok(&["run", "--rm", &reference, "echo", "pulled-by-run"]);
    assert!(out.stdout.ends_with("pulled-by-run\n"), "{out}");
    h.assert_clean();
    h2.assert_clean();
}
