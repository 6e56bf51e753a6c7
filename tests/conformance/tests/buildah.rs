//! buildah driving the runtime under test (`--runtime PATH`, OCI isolation). Each test has
//! its own private store ([`Buildah`]); dropping it removes its working containers.

use std::fs;

use hull_testkit::engines::Buildah;

/// `buildah from localhost/busybox`; returns the working container's name.
fn from(b: &Buildah, image: &str) -> String {
    let out = b.buildah(&["from", "--pull-never", image]).ok();
    out.stdout.trim().to_owned()
}

/// `buildah run --runtime RUNTIME --isolation oci CONTAINER -- CMD…`.
fn brun(b: &Buildah, container: &str, cmd: &[&str]) -> hull_testkit::command::Output {
    let runtime = b.runtime().path().display().to_string();
    let mut args = vec![
        "run",
        "--runtime",
        &runtime,
        "--isolation",
        "oci",
        container,
        "--",
    ];
    args.extend(cmd);
    b.buildah(&args)
}

#[test]
fn run_in_working_container_prints_stdout() {
    let b = Buildah::new();
    let c = from(&b, Buildah::IMAGE);
    let out = brun(&b, &c, &["echo", "hi"]).ok();
    assert_eq!(out.stdout, "hi\n", "{out}");
    b.runtime().assert_called("create");
    b.runtime().assert_called("start");
}

#[test]
fn run_failure_fails_buildah() {
    let b = Buildah::new();
    let c = from(&b, Buildah::IMAGE);
    let out = brun(&b, &c, &["sh", "-c", "echo before; exit 7"]);
    assert_eq!(out.stdout, "before\n", "{out}");
    assert!(!out.success(), "a failing RUN must fail buildah run: {out}");
    assert!(
        out.stderr.contains("exit status 7"),
        "buildah should report the status: {out}"
    );
}

#[test]
fn run_changes_persist_in_working_container() {
    let b = Buildah::new();
    let c = from(&b, Buildah::IMAGE);
    brun(&b, &c, &["sh", "-c", "echo persisted > /state.txt"]).ok();
    let out = brun(&b, &c, &["cat", "/state.txt"]).ok();
    assert_eq!(out.stdout, "persisted\n", "{out}");
}

#[test]
fn bud_with_two_run_steps_builds_expected_content() {
    let b = Buildah::new();
    let ctx = b.dir().join("context");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(
        ctx.join("Containerfile"),
        format!(
            "FROM {}\n\
             RUN echo one > /one.txt && mkdir -p /data\n\
             RUN cat /one.txt > /data/two.txt && echo two >> /data/two.txt && echo $((6*7)) > /data/answer\n",
            Buildah::IMAGE
        ),
    )
    .unwrap();
    let runtime = b.runtime().path().display().to_string();
    let ctx_s = ctx.display().to_string();
    let out = b
        .buildah(&[
            "bud",
            "--runtime",
            &runtime,
            "--isolation",
            "oci",
            "--pull-never",
            "--layers=false",
            "-t",
            "localhost/built:conformance",
            &ctx_s,
        ])
        .ok();
    assert!(out.stdout.contains("STEP 3/3"), "{out}");
    // Each RUN went through the runtime under test.
    let creates = b
        .runtime()
        .calls()
        .iter()
        .filter(|c| c.split(' ').any(|a| a == "create"))
        .count();
    assert!(
        creates >= 2,
        "expected a runtime `create` per RUN step, calls:\n{}",
        b.runtime().calls().join("\n")
    );

    // The built image has both files: read them through a container…
    let c = from(&b, "localhost/built:conformance");
    let out = brun(
        &b,
        &c,
        &["cat", "/one.txt", "/data/two.txt", "/data/answer"],
    )
    .ok();
    assert_eq!(out.stdout, "one\none\ntwo\n42\n", "{out}");

    // …and through a mount of its root filesystem, without the runtime.
    let mnt = b.buildah(&["mount", &c]).ok();
    let root = std::path::PathBuf::from(mnt.stdout.trim());
    assert_eq!(
        fs::read_to_string(root.join("data/two.txt")).unwrap(),
        "one\ntwo\n"
    );
    b.buildah(&["umount", &c]).ok();
}
