//! load (docker-archive, oci-archive, OCI layout), save → load round trips, remove.

use std::fs;
use std::process::Command;

use hull_image::{ImageError, Store};
use serde_json::json;

use crate::fixtures::{
    busybox_layer, require, single_image_layout, skopeo_copy, tree, Layer, Layout, TarBuilder,
};

/// An OCI layout with the busybox image tagged `latest`; returns (tempdir, layout, id).
fn busybox_layout() -> (tempfile::TempDir, std::path::PathBuf, String) {
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("oci");
    let id = single_image_layout(&layout, &[busybox_layer().clone()], "latest");
    (work, layout, id)
}

#[test]
fn load_docker_archive_and_oci_archive_from_skopeo() {
    let (work, layout, id) = busybox_layout();
    let src = format!("oci:{}:latest", layout.display());
    let docker_archive = work.path().join("docker.tar");
    let oci_archive = work.path().join("oci.tar");
    skopeo_copy(
        &[],
        &src,
        &format!("docker-archive:{}:busybox:local", docker_archive.display()),
    );
    skopeo_copy(
        &[],
        &src,
        &format!("oci-archive:{}:latest", oci_archive.display()),
    );

    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let recs = store
        .load(&mut fs::File::open(&docker_archive).unwrap(), None)
        .unwrap();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].id, id);
    assert_eq!(recs[0].names, vec!["docker.io/library/busybox:local"]);
    let dirs = store.layer_dirs(&recs[0]).unwrap();
    assert!(dirs[0].join("bin/busybox").is_file());
    assert_eq!(store.resolve("busybox:local").unwrap().id, id);

    // The oci-archive's entry is tagged only "latest": `name` names it.
    let recs = store
        .load(&mut fs::File::open(&oci_archive).unwrap(), Some("mybusy"))
        .unwrap();
    assert_eq!(recs[0].id, id);
    assert_eq!(
        recs[0].names,
        vec![
            "docker.io/library/busybox:local",
            "docker.io/library/mybusy:latest"
        ]
    );
    assert_eq!(store.images().unwrap().len(), 1);

    // Without a name it loads untagged (dangling) in a fresh store.
    let root2 = tempfile::tempdir().unwrap();
    let store2 = Store::open(root2.path()).unwrap();
    let recs = store2
        .load(&mut fs::File::open(&oci_archive).unwrap(), None)
        .unwrap();
    assert!(recs[0].names.is_empty());
    assert_eq!(store2.resolve(&id).unwrap().id, id);

    // A gzip-compressed docker-archive (`docker save | gzip`) loads too.
    require("gzip", "gzip");
    let gz = work.path().join("docker.tar.gz");
    let out = Command::new("gzip")
        .arg("-1")
        .arg("-k")
        .arg(&docker_archive)
        .output()
        .unwrap();
    assert!(out.status.success());
    let root3 = tempfile::tempdir().unwrap();
    let store3 = Store::open(root3.path()).unwrap();
    let recs = store3
        .load(&mut fs::File::open(&gz).unwrap(), None)
        .unwrap();
    assert_eq!(recs[0].id, id);

    // Garbage is a clean error.
    let err = store3
        .load(&mut &b"not a tar at all"[..], None)
        .unwrap_err();
    assert!(matches!(err, ImageError::Invalid { .. }), "{err}");
}

#[test]
fn load_dir_picks_the_host_image_of_a_nested_index() {
    let work = tempfile::tempdir().unwrap();
    let layout = Layout::new(&work.path().join("oci"));
    let l = |s: &str| Layer::plain(TarBuilder::new().file("arch", s.as_bytes(), 0o644).build());
    let (amd, amd_id) = layout.image(&[l("amd64")], "amd64", &["sh"]);
    let (arm, arm_id) = layout.image(&[l("arm64")], "arm64", &["sh"]);
    let index = layout.index_blob(&[arm, amd]);
    layout.set_index(&[(index, Some("latest"))]);
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let recs = store.load_dir(&layout.dir, Some("multi")).unwrap();
    let want = if hull_image::Platform::host().architecture == "arm64" {
        arm_id
    } else {
        amd_id
    };
    assert_eq!(recs[0].id, want);
    assert_eq!(recs[0].names, vec!["docker.io/library/multi:latest"]);

    // A blob that does not match its digest is refused.
    let bad = work.path().join("bad");
    let id = single_image_layout(&bad, &[l("x")], "latest");
    let config = bad.join("blobs/sha256").join(crate::fixtures::hex(&id));
    let mut data = fs::read(&config).unwrap();
    data.push(b' ');
    fs::write(&config, data).unwrap();
    let err = store.load_dir(&bad, Some("bad")).unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::DigestMismatch { .. } | ImageError::SizeMismatch { .. }
        ),
        "{err}"
    );
}

#[test]
fn save_then_load_round_trips() {
    let (work, layout, _) = busybox_layout();
    // A second image with a zstd layer on top, to save two images sharing a layer.
    let top = Layer::zstd(TarBuilder::new().file("etc/motd", b"hi\n", 0o644).build());
    let two = work.path().join("two");
    let two_id = single_image_layout(&two, &[busybox_layer().clone(), top], "v2");

    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let a = store.load_dir(&layout, Some("busybox")).unwrap().remove(0);
    let b = store
        .load_dir(&two, Some("127.0.0.1:5000/app"))
        .unwrap()
        .remove(0);
    assert_eq!(b.id, two_id);
    assert_eq!(b.names, vec!["127.0.0.1:5000/app:v2"]);

    let mut saved = Vec::new();
    store.save(&["busybox", &b.id], &mut saved).unwrap();
    let saved_path = work.path().join("saved.tar");
    fs::write(&saved_path, &saved).unwrap();

    let root2 = tempfile::tempdir().unwrap();
    let store2 = Store::open(root2.path()).unwrap();
    let loaded = store2.load(&mut &saved[..], None).unwrap();
    assert_eq!(loaded.len(), 2);
    for (orig, back) in [(&a, &loaded[0]), (&b, &loaded[1])] {
        assert_eq!(back.id, orig.id);
        assert_eq!(back.names, orig.names);
        assert_eq!(back.layers, orig.layers);
        assert_eq!(back.platform, orig.platform);
        let d1 = store.layer_dirs(orig).unwrap();
        let d2 = store2.layer_dirs(back).unwrap();
        for (x, y) in d1.iter().zip(&d2) {
            assert_eq!(tree(x), tree(y));
        }
        assert_eq!(
            serde_json::to_value(store.config(orig).unwrap()).unwrap(),
            serde_json::to_value(store2.config(back).unwrap()).unwrap()
        );
    }

    // Other tools read it: skopeo as a docker-archive (its raw config is ours: same id)
    // and as an oci-archive (copied to a layout unchanged, it loads as the same image).
    let skopeo = require("skopeo", "skopeo");
    let out = Command::new(&skopeo)
        .args(["--insecure-policy", "inspect", "--config", "--raw"])
        .arg(format!(
            "docker-archive:{}:busybox:latest",
            saved_path.display()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(crate::fixtures::sha256(&out.stdout), a.id);
    let out_dir = work.path().join("from-oci-archive");
    skopeo_copy(
        &[],
        &format!("oci-archive:{}:v2", saved_path.display()),
        &format!("oci:{}:x", out_dir.display()),
    );
    let again = store2.load_dir(&out_dir, Some("via-oci")).unwrap();
    assert_eq!(again[0].id, b.id);

    // Unknown names are errors.
    assert!(matches!(
        store.save(&["nope"], &mut Vec::new()).unwrap_err(),
        ImageError::NotFound { .. }
    ));
}

#[test]
fn remove_refuses_images_in_use_unless_forced() {
    let (_work, layout, id) = busybox_layout();
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    store.load_dir(&layout, Some("one")).unwrap();
    store.tag("one", "two:x").unwrap();
    let rec = store.resolve(&id).unwrap();
    assert_eq!(
        rec.names,
        vec!["docker.io/library/one:latest", "docker.io/library/two:x"]
    );
    let layer_dir = store.layer_dirs(&rec).unwrap().remove(0);
    let in_use = vec![id.clone()];

    // One of two names: just untagged, even in use.
    let lines = store.remove("one", &in_use, false).unwrap();
    assert_eq!(lines, vec!["Untagged: docker.io/library/one:latest"]);

    // The last name of an image in use: refused.
    let err = store.remove("two:x", &in_use, false).unwrap_err();
    assert!(matches!(err, ImageError::InUse { .. }), "{err}");
    assert!(err.to_string().contains(&id));
    // Also by id, and with the bare hex id in `in_use`.
    let bare = vec![id.trim_start_matches("sha256:").to_string()];
    assert!(matches!(
        store.remove(&id, &bare, false).unwrap_err(),
        ImageError::InUse { .. }
    ));

    // Forced: the name goes, the content stays for the running container.
    let lines = store.remove("two:x", &in_use, true).unwrap();
    assert_eq!(lines, vec!["Untagged: docker.io/library/two:x"]);
    let rec = store.resolve(&id).unwrap();
    assert!(rec.names.is_empty());
    assert!(layer_dir.join("bin/busybox").is_file());

    // Not in use any more: removed by id with its content.
    let lines = store.remove(&id[..19], &[], false).unwrap();
    assert_eq!(lines[0], format!("Deleted: {id}"));
    assert_eq!(lines[1], format!("Deleted: {}", busybox_layer().diff_id));
    assert!(store.images().unwrap().is_empty());
    assert!(!layer_dir.exists());
    assert_eq!(
        fs::read_dir(store.root().join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
    assert!(matches!(
        store.remove("one", &[], false).unwrap_err(),
        ImageError::NotFound { .. }
    ));

    // index.json is the index file: valid JSON, written atomically.
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(store.root().join("images.json")).unwrap()).unwrap();
    assert_eq!(index, json!({"images": []}));
}

#[test]
fn load_legacy_docker_save_format_with_shared_layer_symlinks() {
    // docker < 25 writes `<layer id>/layer.tar`, and a layer shared by two images is a
    // symlink to the first copy.
    let a = TarBuilder::new().file("a", b"a\n", 0o644).build();
    let b = TarBuilder::new().file("b", b"b\n", 0o644).build();
    let (da, db) = (crate::fixtures::sha256(&a), crate::fixtures::sha256(&b));
    let config = |diff_ids: &[&str]| {
        serde_json::to_vec(&json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids}
        }))
        .unwrap()
    };
    let (c1, c2) = (config(&[&da]), config(&[&da, &db]));
    let (h1, h2) = (crate::fixtures::sha256(&c1), crate::fixtures::sha256(&c2));
    let (id1, id2, id3) = ("1".repeat(64), "2".repeat(64), "3".repeat(64));
    let manifest = json!([
        {"Config": format!("{}.json", crate::fixtures::hex(&h1)), "RepoTags": ["legacy:1"], "Layers": [format!("{id1}/layer.tar")]},
        {"Config": format!("{}.json", crate::fixtures::hex(&h2)), "RepoTags": ["legacy:2"],
         "Layers": [format!("{id2}/layer.tar"), format!("{id3}/layer.tar")]}
    ]);
    let mut t = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        t.append_data(&mut h, path, data).unwrap();
    };
    add(&format!("{}.json", crate::fixtures::hex(&h1)), &c1);
    add(&format!("{}.json", crate::fixtures::hex(&h2)), &c2);
    add(&format!("{id1}/VERSION"), b"1.0");
    add(&format!("{id1}/layer.tar"), &a);
    add(&format!("{id3}/layer.tar"), &b);
    add("repositories", b"{}");
    add("manifest.json", &serde_json::to_vec(&manifest).unwrap());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    t.append_link(
        &mut h,
        format!("{id2}/layer.tar"),
        format!("../{id1}/layer.tar"),
    )
    .unwrap();
    let archive = t.into_inner().unwrap();

    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let recs = store.load(&mut &archive[..], None).unwrap();
    assert_eq!(recs.len(), 2);
    assert_eq!(
        (recs[0].id.as_str(), recs[1].id.as_str()),
        (h1.as_str(), h2.as_str())
    );
    assert_eq!(recs[1].names, vec!["docker.io/library/legacy:2"]);
    let dirs = store.layer_dirs(&recs[1]).unwrap();
    assert_eq!(fs::read(dirs[0].join("a")).unwrap(), b"a\n");
    assert_eq!(fs::read(dirs[1].join("b")).unwrap(), b"b\n");
}
