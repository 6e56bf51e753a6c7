//! VM templates: clones get their own randomness and the host's clock, a template follows its
//! inputs (kernel, initramfs), a damaged one is rebuilt, concurrent first starts build one, and
//! turning templates off boots cold with virtio-fs. Real VMs (TCG here).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use common::{finish, run_cmd, spawn, Bundle, Out, Root, VM_TIMEOUT};
use serde_json::Value;

/// A root whose templates are its own (whatever `HULL_TEMPLATE_DIR` the suite runs with).
struct TemplateRoot {
    root: Root,
}

impl TemplateRoot {
    fn new() -> Self {
        Self { root: Root::new() }
    }

    fn dir(&self) -> PathBuf {
        self.root.path().join(".templates")
    }

    /// `hull-runtime run` of `bundle` with `env`; returns the output and the monitor's timings.
    fn run_with(&self, b: &Bundle, id: &str, env: &[(&str, &str)]) -> (Out, Value) {
        let timings = self.root.path().join(format!("timings-{id}.json"));
        let mut c = self.cmd(b, id);
        c.env("HULL_TIMINGS_FILE", &timings);
        for (k, v) in env {
            c.env(k, v);
        }
        let out = finish(spawn(&mut c, false), None, VM_TIMEOUT);
        let t = std::fs::read(&timings)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        let _ = std::fs::remove_file(&timings);
        (out, t)
    }

    fn run(&self, b: &Bundle, id: &str) -> (Out, Value) {
        self.run_with(b, id, &[])
    }

    fn cmd(&self, b: &Bundle, id: &str) -> Command {
        let mut c = run_cmd(&self.root, b, id);
        c.env("HULL_TEMPLATE_DIR", self.dir());
        c
    }

    /// Lines of `builds.log`: one per template built.
    fn builds(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir().join("builds.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The template directories (keys).
    fn templates(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.dir())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        v.sort();
        v
    }
}

fn vm_start(t: &Value) -> &str {
    t["vm_start"].as_str().unwrap_or("(no timings)")
}

fn ok(out: &Out) {
    assert_eq!(out.code, Some(0), "{out}");
}

#[test]
fn clones_get_their_own_randomness_and_the_hosts_clock() {
    let r = TemplateRoot::new();
    let b = Bundle::busybox(&[
        "sh",
        "-c",
        "cat /proc/sys/kernel/random/uuid; head -c16 /dev/urandom | od -An -tx1; date +%s",
    ]);
    let (first, t) = r.run(&b, "build");
    ok(&first);
    assert_eq!(vm_start(&t), "clone+build", "{t}");
    let mut seen = Vec::new();
    for id in ["clone1", "clone2"] {
        let (out, t) = r.run(&b, id);
        ok(&out);
        assert_eq!(vm_start(&t), "clone", "{t}");
        let text = out.stdout_str();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        let guest_time: u64 = lines[2].trim().parse().expect("date +%s");
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        assert!(
            now.as_secs().abs_diff(guest_time) <= 5,
            "guest clock {guest_time} vs host {}",
            now.as_secs()
        );
        seen.push((lines[0].to_owned(), lines[1].to_owned()));
    }
    assert_ne!(seen[0].0, seen[1].0, "two clones made the same uuid");
    assert_ne!(
        seen[0].1, seen[1].1,
        "two clones read the same random bytes"
    );
    assert_eq!(r.builds().len(), 1, "{:?}", r.builds());
    r.root.assert_clean("clones");
}

/// A copy of the guest files whose identity the test can change.
fn guest_copy(dir: &Path) -> PathBuf {
    let src = PathBuf::from(std::env::var_os("HULL_GUEST_DIR").unwrap_or_else(|| {
        panic!("HULL_GUEST_DIR must name the guest kernel and initramfs (scripts/test.sh sets it)")
    }));
    let dst = dir.join("guest");
    std::fs::create_dir_all(&dst).unwrap();
    for f in ["vmlinux", "initramfs.cpio"] {
        std::fs::copy(src.join(f), dst.join(f)).unwrap();
    }
    dst
}

/// Rewrites `file` with the same bytes: a new file as far as templates can tell (mtime).
fn replace(file: &Path) {
    let bytes = std::fs::read(file).unwrap();
    let tmp = file.with_extension("new");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, file).unwrap();
}

#[test]
fn a_new_kernel_or_initramfs_gets_a_new_template() {
    let r = TemplateRoot::new();
    let scratch = tempfile::tempdir().unwrap();
    let guest = guest_copy(scratch.path());
    let env = [("HULL_GUEST_DIR", guest.to_str().unwrap())];
    let b = Bundle::busybox(&["true"]);
    let (out, t) = r.run_with(&b, "a", &env);
    ok(&out);
    assert_eq!(vm_start(&t), "clone+build", "{t}");
    let (out, t) = r.run_with(&b, "b", &env);
    ok(&out);
    assert_eq!(vm_start(&t), "clone", "{t}");
    replace(&guest.join("initramfs.cpio"));
    let (out, t) = r.run_with(&b, "c", &env);
    ok(&out);
    assert_eq!(vm_start(&t), "clone+build", "new initramfs: {t}");
    replace(&guest.join("vmlinux"));
    let (out, t) = r.run_with(&b, "d", &env);
    ok(&out);
    assert_eq!(vm_start(&t), "clone+build", "new kernel: {t}");
    assert_eq!(r.builds().len(), 3, "{:?}", r.builds());
    // The templates of the replaced files are garbage: each build removed the previous one.
    assert_eq!(r.templates().len(), 1, "{:?}", r.templates());
    r.root.assert_clean("new inputs");
}

#[test]
fn a_truncated_or_damaged_template_is_rebuilt_not_used() {
    let r = TemplateRoot::new();
    let b = Bundle::busybox(&["sh", "-c", "echo alive"]);
    let (out, _) = r.run(&b, "a");
    ok(&out);
    let t = r.templates().pop().expect("a template");
    let memory = std::fs::OpenOptions::new()
        .write(true)
        .open(t.join("memory"))
        .unwrap();
    memory.set_len(1 << 20).unwrap();
    drop(memory);
    let (out, timings) = r.run(&b, "b");
    ok(&out);
    assert_eq!(out.stdout_str(), "alive\n");
    assert_eq!(vm_start(&timings), "clone+build", "{timings}");
    // A damaged device state: caught by its checksum.
    let state = t.join("state");
    let mut bytes = std::fs::read(&state).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&state, bytes).unwrap();
    let (out, timings) = r.run(&b, "c");
    ok(&out);
    assert_eq!(out.stdout_str(), "alive\n");
    assert_eq!(vm_start(&timings), "clone+build", "{timings}");
    assert_eq!(r.builds().len(), 3, "{:?}", r.builds());
    r.root.assert_clean("damaged");
}

#[test]
fn ten_parallel_first_starts_build_one_template() {
    let r = TemplateRoot::new();
    let b = Bundle::busybox(&["sh", "-c", "echo up"]);
    let children: Vec<_> = (0..10)
        .map(|i| {
            let mut c = r.cmd(&b, &format!("p{i}"));
            spawn(&mut c, false)
        })
        .collect();
    for (i, child) in children.into_iter().enumerate() {
        let out = finish(child, None, VM_TIMEOUT);
        assert_eq!(out.code, Some(0), "p{i}: {out}");
        assert_eq!(out.stdout_str(), "up\n", "p{i}");
    }
    assert_eq!(r.builds().len(), 1, "{:?}", r.builds());
    r.root.assert_clean("parallel");
}

#[test]
fn templates_off_boots_cold_with_virtio_fs() {
    let r = TemplateRoot::new();
    let mut b = Bundle::busybox(&["sh", "-c", "grep ' / ' /proc/mounts | cut -d' ' -f3"]);
    let (out, t) = r.run_with(&b, "env-off", &[("HULL_VM_TEMPLATE", "off")]);
    ok(&out);
    assert_eq!(vm_start(&t), "cold", "{t}");
    assert_eq!(out.stdout_str(), "virtiofs\n");
    b.edit(|c| c["annotations"] = serde_json::json!({"org.hull.vm.template": "off"}));
    b.write_config();
    let (out, t) = r.run(&b, "annotation-off");
    ok(&out);
    assert_eq!(vm_start(&t), "cold", "{t}");
    assert!(r.builds().is_empty(), "{:?}", r.builds());
    b.edit(|c| c["annotations"] = serde_json::json!({}));
    b.write_config();
    let (out, t) = r.run(&b, "on");
    ok(&out);
    assert_eq!(vm_start(&t), "clone+build", "{t}");
    assert_eq!(out.stdout_str(), "9p\n");
    let (out, _) = r.run_with(&b, "bad", &[("HULL_VM_TEMPLATE", "sometimes")]);
    assert_eq!(out.code, Some(3), "{out}");
    assert!(out.stderr_str().contains("HULL_VM_TEMPLATE"), "{out}");
    r.root.assert_clean("off");
}

#[test]
fn a_template_that_cannot_be_restored_is_removed_and_the_vm_boots_instead() {
    let r = TemplateRoot::new();
    let b = Bundle::busybox(&["sh", "-c", "echo alive"]);
    ok(&r.run(&b, "a").0);
    let t = r.templates().pop().expect("a template");
    // Consistent files (meta.json matches) but half a device state: only QEMU can tell.
    let state = std::fs::read(t.join("state")).unwrap();
    let half = &state[..state.len() / 2];
    std::fs::write(t.join("state"), half).unwrap();
    let sum = Command::new("sha256sum")
        .arg(t.join("state"))
        .output()
        .expect("sha256sum (coreutils)");
    let sum = String::from_utf8_lossy(&sum.stdout);
    let meta_path = t.join("meta.json");
    let mut meta: Value = serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    meta["state_bytes"] = half.len().into();
    meta["state_sha256"] = sum.split_whitespace().next().unwrap().into();
    std::fs::write(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();

    let (out, timings) = r.run(&b, "b");
    ok(&out);
    assert_eq!(out.stdout_str(), "alive\n");
    assert_eq!(vm_start(&timings), "cold", "{timings}");
    assert!(
        !t.exists(),
        "the template that failed to restore is removed"
    );
    let (out, timings) = r.run(&b, "c");
    ok(&out);
    assert_eq!(vm_start(&timings), "clone+build", "{timings}");
    r.root.assert_clean("restore failure");
}
