//! Unpacking of hand-written layers: whiteouts and opaque directories as overlayfs wants
//! them (checked by mounting an overlay), metadata, and malicious layers.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use hull_image::{ImageError, Store};
use tar::EntryType;

use crate::fixtures::{hex, require, single_image_layout, Layer, TarBuilder};

/// An xattr of `path` (not following symlinks), if set.
fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: valid C strings and buffer.
    let len =
        unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if len < 0 {
        return None;
    }
    buf.truncate(len as usize);
    Some(buf)
}

fn is_whiteout(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_char_device() && m.rdev() == 0)
}

/// An overlay mount of `lower` (lowest first), unmounted on drop.
struct Overlay {
    dir: PathBuf,
}

impl Overlay {
    fn mount(lower: &[PathBuf], dir: &Path) -> Overlay {
        require("mount", "mount");
        fs::create_dir_all(dir).unwrap();
        let lowerdir: Vec<String> = lower
            .iter()
            .rev()
            .map(|p| p.display().to_string())
            .collect();
        let out = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o"])
            .arg(format!("lowerdir={}", lowerdir.join(":")))
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mounting an overlay failed (this test needs root and overlayfs): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Overlay {
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

#[test]
fn whiteouts_opaque_dirs_and_metadata() {
    let lower = Layer::gzip(
        TarBuilder::new()
            .dir("./", 0o755)
            .dir("a/", 0o750)
            .file("a/x", b"x\n", 0o644)
            .file("a/y", b"y\n", 0o600)
            .hardlink("a/hard", "a/y")
            .dir("b/", 0o755)
            .file("b/z", b"z\n", 0o644)
            .file("keep", b"keep\n", 0o644)
            .symlink("etc-link", "/etc")
            .symlink("rel-link", "a/x")
            .file_owned("suid", b"#!/bin/sh\n", 0o4755, 1234, 5678)
            .dir("sticky/", 0o1777)
            .device("fifo", EntryType::Fifo, 0, 0)
            .device("null", EntryType::Char, 1, 3)
            .file_xattr(
                "xattr-file",
                b"x",
                &[("user.hull", b"yes"), ("trusted.overlay.opaque", b"y")],
            )
            .build(),
    );
    let upper = Layer::zstd(
        TarBuilder::new()
            .file("a/.wh.x", b"", 0o644)
            .file("b/.wh..wh..opq", b"", 0o644)
            .file("b/new", b"new\n", 0o644)
            .file(".wh.keep", b"", 0o644)
            .file("c/.wh..wh..opq", b"", 0o644)
            .build(),
    );
    let work = tempfile::tempdir().unwrap();
    let id = single_image_layout(
        &work.path().join("oci"),
        &[lower.clone(), upper.clone()],
        "v1",
    );
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let recs = store
        .load_dir(&work.path().join("oci"), Some("whiteouts"))
        .unwrap();
    assert_eq!(recs.len(), 1);
    let rec = &recs[0];
    assert_eq!(rec.id, id);
    assert_eq!(rec.names, vec!["docker.io/library/whiteouts:v1"]);
    let dirs = store.layer_dirs(rec).unwrap();
    assert_eq!(
        dirs[0],
        store.root().join("layers").join(hex(&lower.diff_id))
    );
    let (l1, l2) = (&dirs[0], &dirs[1]);

    // Lower layer: content and metadata.
    assert_eq!(fs::read(l1.join("a/x")).unwrap(), b"x\n");
    let y = fs::metadata(l1.join("a/y")).unwrap();
    let hard = fs::metadata(l1.join("a/hard")).unwrap();
    assert_eq!((y.ino(), y.nlink()), (hard.ino(), 2), "hardlink");
    assert_eq!(y.mode() & 0o7777, 0o600);
    assert_eq!(fs::metadata(l1.join("a")).unwrap().mode() & 0o7777, 0o750);
    assert_eq!(
        fs::read_link(l1.join("etc-link")).unwrap(),
        Path::new("/etc")
    );
    assert_eq!(
        fs::read_link(l1.join("rel-link")).unwrap(),
        Path::new("a/x")
    );
    let suid = fs::metadata(l1.join("suid")).unwrap();
    assert_eq!(
        (suid.mode() & 0o7777, suid.uid(), suid.gid()),
        (0o4755, 1234, 5678)
    );
    assert_eq!(
        fs::metadata(l1.join("sticky")).unwrap().mode() & 0o7777,
        0o1777
    );
    assert!(fs::symlink_metadata(l1.join("fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    let null = fs::symlink_metadata(l1.join("null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), libc::makedev(1, 3));
    assert_eq!(fs::metadata(l1.join("a/x")).unwrap().mtime(), 1_700_000_000);
    assert_eq!(
        fs::metadata(l1.join("a")).unwrap().mtime(),
        1_700_000_000,
        "directory mtime"
    );
    // Overlay xattrs from a layer are dropped; others are kept where the fs allows.
    assert_eq!(
        xattr(&l1.join("xattr-file"), "trusted.overlay.opaque"),
        None
    );
    if let Some(v) = xattr(&l1.join("xattr-file"), "user.hull") {
        assert_eq!(v, b"yes");
    }

    // Upper layer: overlayfs whiteouts and opaque directories.
    assert!(
        is_whiteout(&l2.join("a/x")),
        "a/x should be a 0/0 character device"
    );
    assert!(is_whiteout(&l2.join("keep")));
    assert!(!l2.join("a/.wh.x").exists() && !l2.join("b/.wh..wh..opq").exists());
    assert_eq!(
        xattr(&l2.join("b"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(
        xattr(&l2.join("c"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(xattr(&l2.join("a"), "trusted.overlay.opaque"), None);
    assert_eq!(fs::read(l2.join("b/new")).unwrap(), b"new\n");

    // What a container sees: the overlay of both.
    let mnt = work.path().join("mnt");
    let ov = Overlay::mount(&dirs, &mnt);
    let m = &ov.dir;
    assert!(!m.join("a/x").exists(), "whiteout hides a/x");
    assert_eq!(fs::read(m.join("a/y")).unwrap(), b"y\n");
    assert!(!m.join("b/z").exists(), "opaque b hides b/z");
    assert_eq!(fs::read(m.join("b/new")).unwrap(), b"new\n");
    assert!(!m.join("keep").exists());
    assert!(m.join("suid").is_file());
    drop(ov);

    // Loading again reuses the unpacked layers.
    let before = fs::metadata(l1.join("a/x")).unwrap().ino();
    store
        .load_dir(&work.path().join("oci"), Some("whiteouts"))
        .unwrap();
    assert_eq!(fs::metadata(l1.join("a/x")).unwrap().ino(), before);
}

/// Loads a one-layer image whose layer is `tar`; returns the error, if any.
fn load_layer(store: &Store, work: &Path, tar: Vec<u8>) -> Result<(), ImageError> {
    let dir = tempfile::tempdir_in(work).unwrap();
    single_image_layout(dir.path(), &[Layer::plain(tar)], "latest");
    store.load_dir(dir.path(), Some("evil")).map(|_| ())
}

fn assert_untouched(outside: &Path) {
    let entries: Vec<_> = fs::read_dir(outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        entries,
        vec![std::ffi::OsString::from("secret")],
        "something was written outside"
    );
    assert_eq!(fs::read(outside.join("secret")).unwrap(), b"secret\n");
}

#[test]
fn malicious_layers_cannot_write_outside_their_directory() {
    let work = tempfile::tempdir().unwrap();
    let outside = work.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("secret"), b"secret\n").unwrap();
    let out = outside.display().to_string();
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();

    let evil: Vec<(&str, Vec<u8>)> = vec![
        (
            "dot-dot path",
            TarBuilder::new()
                .raw(b"../escape", EntryType::Regular, b"x", None)
                .build(),
        ),
        (
            "deep dot-dot path",
            TarBuilder::new()
                .raw(b"a/../../../escape", EntryType::Regular, b"x", None)
                .build(),
        ),
        (
            "absolute path",
            TarBuilder::new()
                .raw(
                    format!("{out}/abs").as_bytes(),
                    EntryType::Regular,
                    b"x",
                    None,
                )
                .build(),
        ),
        (
            "write through an absolute symlink",
            TarBuilder::new()
                .symlink("evil", &out)
                .raw(b"evil/pwned", EntryType::Regular, b"x", None)
                .build(),
        ),
        (
            "write through a relative symlink",
            TarBuilder::new()
                .symlink("up", "../../../../../../../../..")
                .raw(
                    format!("up{out}/pwned").as_bytes(),
                    EntryType::Regular,
                    b"x",
                    None,
                )
                .build(),
        ),
        (
            "directory through a symlink",
            TarBuilder::new()
                .symlink("evil", &out)
                .raw(b"evil/newdir/", EntryType::Directory, b"", None)
                .build(),
        ),
        (
            "hardlink to a path outside",
            TarBuilder::new()
                .raw(b"h", EntryType::Link, b"", Some(b"../../../outside/secret"))
                .build(),
        ),
        (
            "hardlink to an absolute path",
            TarBuilder::new()
                .raw(
                    b"h",
                    EntryType::Link,
                    b"",
                    Some(format!("{out}/secret").as_bytes()),
                )
                .build(),
        ),
        (
            "hardlink through a symlink",
            TarBuilder::new()
                .symlink("evil", &out)
                .raw(b"h", EntryType::Link, b"", Some(b"evil/secret"))
                .build(),
        ),
        (
            "whiteout of ..",
            TarBuilder::new()
                .raw(b"a/.wh...", EntryType::Regular, b"", None)
                .build(),
        ),
    ];
    for (what, tar) in evil {
        let err = load_layer(&store, work.path(), tar).expect_err(what);
        assert!(
            matches!(err, ImageError::UnsafeLayerEntry { .. }),
            "{what}: {err}"
        );
        assert_untouched(&outside);
    }
    assert!(store.images().unwrap().is_empty());
    let layer_dirs: Vec<_> = fs::read_dir(store.root().join("layers")).unwrap().collect();
    assert!(
        layer_dirs.is_empty(),
        "refused layers left directories: {layer_dirs:?}"
    );
    let tmp: Vec<_> = fs::read_dir(store.root().join("tmp")).unwrap().collect();
    assert!(tmp.is_empty(), "scratch left behind: {tmp:?}");

    // Legitimate: absolute symlinks are kept as they are (never followed), and a file entry
    // replacing a symlink replaces the link instead of writing through it.
    let ok = TarBuilder::new()
        .symlink("etc", "/etc")
        .symlink("s", &format!("{out}/secret"))
        .file("s", b"replaced\n", 0o644)
        .build();
    load_layer(&store, work.path(), ok).unwrap();
    assert_untouched(&outside);
    let rec = store.resolve("evil").unwrap();
    let dir = &store.layer_dirs(&rec).unwrap()[0];
    assert_eq!(fs::read_link(dir.join("etc")).unwrap(), Path::new("/etc"));
    assert_eq!(fs::read(dir.join("s")).unwrap(), b"replaced\n");
    assert!(!fs::symlink_metadata(dir.join("s"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn a_layer_repeated_in_an_image_is_listed_once() {
    let a = Layer::plain(TarBuilder::new().file("a", b"a", 0o644).build());
    let b = Layer::plain(TarBuilder::new().file("a", b"b", 0o644).build());
    let work = tempfile::tempdir().unwrap();
    single_image_layout(
        &work.path().join("oci"),
        &[a.clone(), b.clone(), a.clone()],
        "latest",
    );
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let rec = store
        .load_dir(&work.path().join("oci"), Some("dup"))
        .unwrap()
        .remove(0);
    assert_eq!(rec.layers.len(), 3);
    let dirs = store.layer_dirs(&rec).unwrap();
    let layers = store.root().join("layers");
    assert_eq!(
        dirs,
        vec![layers.join(hex(&b.diff_id)), layers.join(hex(&a.diff_id))]
    );
    let ov = Overlay::mount(&dirs, &work.path().join("mnt"));
    assert_eq!(fs::read(ov.dir.join("a")).unwrap(), b"a");
}
