//! Pulls from a real registry.

use std::fs;
use std::path::Path;

use hull_image::{login, ImageError, Platform, PullOptions, Store};
use serde_json::json;

use crate::fixtures::{busybox_layer, hex, single_image_layout, Layer, Layout, TarBuilder};
use crate::registry::Registry;

fn quiet() -> PullOptions {
    PullOptions {
        // An auth file that does not exist: no credentials from the host's ~/.docker.
        auth_file: Some("/nonexistent/hull-image-test/config.json".into()),
        ..Default::default()
    }
}

/// Blobs in the store's blobs/ directory.
fn blobs(store: &Store) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(store.root().join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Files in tmp/ (partial downloads, scratch).
fn tmp_files(store: &Store) -> Vec<String> {
    fs::read_dir(store.root().join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// busybox (gzip) + a small zstd layer adding /etc/hull-test, pushed as `<repo>:latest`.
fn push_busybox(reg: &Registry, repo: &str) -> (String, String, Layer) {
    let work = tempfile::tempdir().unwrap();
    let extra = Layer::zstd(
        TarBuilder::new()
            .dir("etc/", 0o755)
            .file("etc/hull-test", b"zstd layer\n", 0o644)
            .build(),
    );
    let layout = work.path().join("oci");
    let id = single_image_layout(&layout, &[busybox_layer().clone(), extra.clone()], "latest");
    let reference = reg.push_layout(&layout, "latest", repo);
    (reference, id, extra)
}

#[test]
fn pull_by_tag_and_by_digest() {
    let reg = Registry::start();
    let (reference, id, _) = push_busybox(&reg, "busybox");
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();

    let rec = store.pull(&reference, &quiet()).unwrap();
    assert_eq!(rec.id, id);
    assert_eq!(rec.names, vec![format!("{}/busybox:latest", reg.addr)]);
    assert_eq!(rec.platform, Platform::host());
    assert_eq!(rec.layers.len(), 2);
    assert_eq!(rec.layers[0], busybox_layer().diff_id);
    assert!(rec.size > 1_000_000, "size {}", rec.size);
    assert_eq!(rec.created.as_deref(), Some("2024-01-01T00:00:00Z"));
    assert_eq!(
        rec.repo_digests,
        vec![format!("{}/busybox@{}", reg.addr, rec.digest)]
    );

    let dirs = store.layer_dirs(&rec).unwrap();
    assert_eq!(dirs.len(), 2);
    let busybox = dirs[0].join("bin/busybox");
    assert!(fs::metadata(&busybox).unwrap().len() > 100_000);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&busybox).unwrap().permissions().mode() & 0o111,
        0o111
    );
    assert_eq!(
        fs::read_link(dirs[0].join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert_eq!(
        fs::read(dirs[1].join("etc/hull-test")).unwrap(),
        b"zstd layer\n"
    );
    let no_colon = dirs.iter().all(|d| !d.to_string_lossy().contains(':'));
    assert!(no_colon, "layer dirs must be usable in lowerdir=: {dirs:?}");

    let config = store.config(&rec).unwrap();
    let c = config.config().as_ref().unwrap();
    assert_eq!(c.cmd().as_ref().unwrap(), &vec!["sh".to_string()]);
    assert_eq!(c.working_dir().as_deref(), Some("/"));
    assert_eq!(c.stop_signal().as_deref(), Some("SIGTERM"));
    assert!(c
        .exposed_ports()
        .as_ref()
        .unwrap()
        .contains(&"8080/tcp".to_string()));

    // Same image by digest, in a second store: no tag name, but the repo digest.
    let root2 = tempfile::tempdir().unwrap();
    let store2 = Store::open(root2.path()).unwrap();
    let by_digest = format!("{}/busybox@{}", reg.addr, rec.digest);
    let rec2 = store2.pull(&by_digest, &quiet()).unwrap();
    assert_eq!(rec2.id, id);
    assert!(rec2.names.is_empty());
    assert_eq!(rec2.repo_digests, vec![by_digest.clone()]);
    assert_eq!(store2.resolve(&by_digest).unwrap().id, id);

    // Pulling the digest into the first store merges into the same image.
    let again = store.pull(&by_digest, &quiet()).unwrap();
    assert_eq!(again.names, rec.names);
    assert_eq!(store.images().unwrap().len(), 1);

    // A wrong digest is a clean error.
    let missing = format!("{}/busybox@sha256:{}", reg.addr, "0".repeat(64));
    let err = store.pull(&missing, &quiet()).unwrap_err();
    assert!(matches!(err, ImageError::ManifestNotFound { .. }), "{err}");

    // resolve: name, short name forms, full id, id prefix.
    assert_eq!(store.resolve(&reference).unwrap().id, id);
    assert_eq!(
        store.resolve(&format!("{}/busybox", reg.addr)).unwrap().id,
        id
    );
    assert_eq!(store.resolve(&id).unwrap().id, id);
    assert_eq!(store.resolve(hex(&id)).unwrap().id, id);
    assert_eq!(store.resolve(&hex(&id)[..12]).unwrap().id, id);
    assert!(matches!(
        store.resolve("nothing-here").unwrap_err(),
        ImageError::NotFound { .. }
    ));
}

#[test]
fn interrupted_pull_resumes_and_bad_partials_are_refetched() {
    let reg = Registry::start();
    let (reference, id, _) = push_busybox(&reg, "resume");
    let layer = busybox_layer();
    let half = layer.blob.len() / 2;

    // 1. A partial download holding the correct first half, while the registry's copy of
    //    that half is corrupted: only a resumed (range) download can succeed.
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    fs::write(
        store
            .root()
            .join("tmp")
            .join(format!("{}.partial", hex(&layer.digest))),
        &layer.blob[..half],
    )
    .unwrap();
    let data = reg.blob_data(&layer.digest);
    let good = fs::read(&data).unwrap();
    let mut bad = good.clone();
    for b in &mut bad[..half] {
        *b ^= 0xff;
    }
    fs::write(&data, &bad).unwrap();
    let rec = store.pull(&reference, &quiet()).unwrap();
    assert_eq!(rec.id, id);
    assert_eq!(
        fs::read(store.root().join("blobs/sha256").join(hex(&layer.digest))).unwrap(),
        layer.blob
    );
    assert!(tmp_files(&store).iter().all(|f| !f.ends_with(".partial")));
    fs::write(&data, &good).unwrap();

    // 2. A partial download with wrong bytes: rejected at the end, fetched again whole.
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    fs::write(
        store
            .root()
            .join("tmp")
            .join(format!("{}.partial", hex(&layer.digest))),
        vec![0x55u8; half],
    )
    .unwrap();
    let rec = store.pull(&reference, &quiet()).unwrap();
    assert_eq!(rec.id, id);
    assert!(store.layer_dirs(&rec).unwrap()[0]
        .join("bin/busybox")
        .is_file());
}

#[test]
fn concurrent_pulls_of_one_image() {
    let reg = Registry::start();
    let (reference, id, _) = push_busybox(&reg, "concurrent");
    let root = tempfile::tempdir().unwrap();
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(|| {
                    let store = Store::open(root.path()).unwrap();
                    store.pull(&reference, &quiet())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in results {
        assert_eq!(r.unwrap().id, id);
    }
    let store = Store::open(root.path()).unwrap();
    let images = store.images().unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].names.len(), 1);
    // manifest, config, 2 layers; nothing partial.
    assert_eq!(blobs(&store).len(), 4);
    assert!(tmp_files(&store).iter().all(|f| !f.ends_with(".partial")));
    let layer_dirs = fs::read_dir(store.root().join("layers"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().is_dir())
        .count();
    assert_eq!(layer_dirs, 2);
}

#[test]
fn index_resolves_to_the_requested_platform() {
    let reg = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let layout = Layout::new(&work.path().join("oci"));
    let arch_layer = |arch: &str| {
        Layer::gzip(
            TarBuilder::new()
                .file("arch", format!("{arch}\n").as_bytes(), 0o644)
                .build(),
        )
    };
    let (amd, amd_id) = layout.image(&[arch_layer("amd64")], "amd64", &["sh"]);
    let (mut arm, arm_id) = layout.image(&[arch_layer("arm64")], "arm64", &["sh"]);
    arm["platform"]["variant"] = json!("v8");
    let attestation = json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": amd["digest"], "size": amd["size"],
        "platform": {"os": "unknown", "architecture": "unknown"}
    });
    let index = layout.index_blob(&[arm.clone(), amd.clone(), attestation]);
    layout.set_index(&[(index.clone(), Some("latest"))]);
    let reference = reg.push_layout(&layout.dir, "latest", "multi");

    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let mut opts = quiet();
    opts.platform = Some("linux/arm64".parse().unwrap());
    let rec = store.pull(&reference, &opts).unwrap();
    assert_eq!(rec.id, arm_id);
    assert_eq!(rec.platform.architecture, "arm64");
    assert_eq!(rec.digest, arm["digest"].as_str().unwrap());
    // The repo digest is the index's, as the registry serves it.
    assert_eq!(
        rec.repo_digests,
        vec![format!(
            "{}/multi@{}",
            reg.addr,
            index["digest"].as_str().unwrap()
        )]
    );
    let dirs = store.layer_dirs(&rec).unwrap();
    assert_eq!(fs::read_to_string(dirs[0].join("arch")).unwrap(), "arm64\n");

    // The default is the host (linux/amd64 here); the tag moves to that image.
    let host = store.pull(&reference, &quiet()).unwrap();
    if Platform::host().architecture == "amd64" {
        assert_eq!(host.id, amd_id);
        let dirs = store.layer_dirs(&host).unwrap();
        assert_eq!(fs::read_to_string(dirs[0].join("arch")).unwrap(), "amd64\n");
        let images = store.images().unwrap();
        assert_eq!(images.len(), 2);
        let arm_rec = images.iter().find(|i| i.id == arm_id).unwrap();
        assert!(arm_rec.names.is_empty(), "the tag moved: {arm_rec:?}");
    }

    // The same as Docker schema 2: a manifest list of docker manifests.
    let docker = reg.push_layout_as(&layout.dir, "latest", "multi-docker", &["--format", "v2s2"]);
    let link =
        "data/docker/registry/v2/repositories/multi-docker/_manifests/tags/latest/current/link";
    let manifest = fs::read(reg.dir.path().join(link)).unwrap();
    let list = fs::read_to_string(reg.blob_data(std::str::from_utf8(&manifest).unwrap())).unwrap();
    assert!(
        list.contains("application/vnd.docker.distribution.manifest.list.v2+json"),
        "skopeo did not push a docker manifest list: {list}"
    );
    opts.platform = Some("linux/arm64/v8".parse().unwrap());
    let rec = store.pull(&docker, &opts).unwrap();
    assert_eq!(rec.id, arm_id);
    assert_ne!(
        rec.digest,
        arm["digest"].as_str().unwrap(),
        "converted to docker schema 2"
    );

    opts.platform = Some("linux/s390x".parse().unwrap());
    let err = store.pull(&reference, &opts).unwrap_err();
    match &err {
        ImageError::NoMatchingPlatform {
            platform,
            available,
            ..
        } => {
            assert_eq!(platform, "linux/s390x");
            assert!(
                available.contains("linux/arm64/v8") && available.contains("linux/amd64"),
                "{available}"
            );
        }
        other => panic!("expected NoMatchingPlatform, got {other}"),
    }
}

#[test]
fn htpasswd_auth_with_credentials_from_a_config_file() {
    let reg = Registry::start_with_auth("hull", "s3cret");
    let (reference, id, _) = push_busybox(&reg, "private");
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let auth_dir = tempfile::tempdir().unwrap();
    let auth_file = auth_dir.path().join("docker/config.json");

    // No credentials: a clear error naming the registry and the auth file.
    let mut opts = quiet();
    opts.auth_file = Some(auth_file.clone());
    let err = store.pull(&reference, &opts).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ImageError::Unauthorized { .. }), "{msg}");
    assert!(
        msg.contains(&reg.addr) && msg.contains("no credentials"),
        "{msg}"
    );
    assert!(msg.contains(&auth_file.display().to_string()), "{msg}");

    // Wrong password: rejected.
    login(&auth_file, &reg.addr, "hull", "wrong").unwrap();
    let err = store.pull(&reference, &opts).unwrap_err();
    assert!(matches!(err, ImageError::Unauthorized { .. }), "{err}");
    assert!(err.to_string().contains("rejected"), "{err}");
    assert!(store.images().unwrap().is_empty());

    // `docker login`'s check before saving.
    let err = hull_image::verify_login(&reg.addr, "hull", "wrong", &[]).unwrap_err();
    assert!(matches!(err, ImageError::Unauthorized { .. }), "{err}");
    hull_image::verify_login(&reg.addr, "hull", "s3cret", &[]).unwrap();

    // Right password, as `hull login` writes it.
    login(&auth_file, &reg.addr, "hull", "s3cret").unwrap();
    let rec = store.pull(&reference, &opts).unwrap();
    assert_eq!(rec.id, id);
    let written: serde_json::Value =
        serde_json::from_slice(&fs::read(&auth_file).unwrap()).unwrap();
    assert!(written["auths"][&reg.addr]["auth"].is_string());
}

#[test]
fn corrupt_blob_on_the_registry_is_rejected() {
    let reg = Registry::start();
    let (reference, _, extra) = push_busybox(&reg, "corrupt");
    let data = reg.blob_data(&extra.digest);
    let good = fs::read(&data).unwrap();

    // Same length, other bytes: a digest mismatch.
    let mut bad = good.clone();
    let n = bad.len();
    bad[n / 2] ^= 0x01;
    fs::write(&data, &bad).unwrap();
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let err = store.pull(&reference, &quiet()).unwrap_err();
    match &err {
        ImageError::DigestMismatch { digest, .. } => assert_eq!(digest, &extra.digest),
        other => panic!("expected a digest mismatch, got {other}"),
    }
    assert!(err.to_string().contains(&extra.digest));
    let present = blobs(&store);
    assert!(
        !present.contains(&hex(&extra.digest).to_string()),
        "corrupt blob stored"
    );
    assert!(!store
        .root()
        .join("layers")
        .join(hex(&extra.diff_id))
        .exists());
    assert!(
        tmp_files(&store).is_empty(),
        "left behind: {:?}",
        tmp_files(&store)
    );
    assert!(store.images().unwrap().is_empty());
    // The other blobs were verified and are kept for the next pull.
    assert!(present.contains(&hex(&busybox_layer().digest).to_string()));

    // Truncated on the registry, which still announces the full length: the transfer is
    // cut short, resumed twice, then an error naming the blob. Nothing is stored; the
    // correct prefix stays in tmp/ for the next pull to resume.
    fs::write(&data, &good[..good.len() - 7]).unwrap();
    let err = store.pull(&reference, &quiet()).unwrap_err();
    assert!(err.to_string().contains(&extra.digest), "{err}");
    assert!(!blobs(&store).contains(&hex(&extra.digest).to_string()));
    assert!(store.images().unwrap().is_empty());

    // Repaired on the registry: the pull completes.
    fs::write(&data, &good).unwrap();
    store.pull(&reference, &quiet()).unwrap();
    assert!(
        tmp_files(&store).is_empty(),
        "left behind: {:?}",
        tmp_files(&store)
    );

    // Gone from the registry's storage: an error naming the blob, no retries needed.
    fs::remove_file(&data).unwrap();
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let err = store.pull(&reference, &quiet()).unwrap_err();
    assert!(
        matches!(err, ImageError::Registry { .. }) && err.to_string().contains(&extra.digest),
        "{err}"
    );
}

#[test]
fn registry_down_names_the_registry() {
    // A port nobody listens on (bound, then released).
    let addr = format!("127.0.0.1:{}", hull_testkit::engines::free_port());
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let err = store
        .pull(&format!("{addr}/busybox:latest"), &quiet())
        .unwrap_err();
    assert!(matches!(err, ImageError::Registry { .. }), "{err}");
    assert!(err.to_string().contains(&addr), "{err}");
    let err = hull_image::verify_login(&addr, "u", "p", &[]).unwrap_err();
    assert!(
        matches!(err, ImageError::Registry { .. }) && err.to_string().contains(&addr),
        "{err}"
    );
}

#[test]
fn normalization_of_references() {
    assert_eq!(
        hull_image::normalize("alpine").unwrap(),
        "docker.io/library/alpine:latest"
    );
    assert_eq!(
        hull_image::normalize("user/app:1").unwrap(),
        "docker.io/user/app:1"
    );
    assert_eq!(
        hull_image::normalize("127.0.0.1:5000/busybox").unwrap(),
        "127.0.0.1:5000/busybox:latest"
    );
    assert!(hull_image::normalize("UPPER").is_err());
}
