//! The OCI runtime config (`config.json`) of a `hull run`: runc's default spec with the image's
//! config and the flags applied as docker applies them, plus the parsers of those flags (each
//! error names the value and what is wrong with it).

use std::path::PathBuf;
use std::str::FromStr;

use oci_spec::image::Config;
use serde_json::{json, Value};

use crate::users::User;

/// The PATH docker gives a container whose image sets none.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// docker's default capability set (what a container's root may do; the VM is the boundary).
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// `-v HOST:CONTAINER[:ro|rw]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub host: PathBuf,
    pub container: String,
    pub read_only: bool,
}

impl FromStr for Volume {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let (host, container, opts) = match parts.as_slice() {
            [h, c] => (*h, *c, ""),
            [h, c, o] => (*h, *c, *o),
            [_] => {
                return Err(format!(
                    "{s:?}: anonymous volumes are not supported, use HOST_PATH:CONTAINER_PATH"
                ))
            }
            _ => return Err(format!("{s:?} is not HOST_PATH:CONTAINER_PATH[:ro|rw]")),
        };
        if !host.starts_with('/') {
            return Err(format!(
                "{s:?}: the host path must be absolute (named volumes are not supported)"
            ));
        }
        if !container.starts_with('/') {
            return Err(format!("{s:?}: the container path must be absolute"));
        }
        if container == "/" {
            return Err(format!("{s:?}: cannot mount over the container's /"));
        }
        let mut read_only = false;
        for o in opts.split(',').filter(|o| !o.is_empty()) {
            match o {
                "ro" => read_only = true,
                "rw" => read_only = false,
                // SELinux relabeling and propagation: nothing to do in a VM.
                "z" | "Z" | "rprivate" | "private" | "rslave" | "slave" | "rshared" | "shared" => {}
                other => return Err(format!("{s:?}: unknown option {other:?} (ro or rw)")),
            }
        }
        Ok(Volume {
            host: PathBuf::from(host),
            container: normalize_abs(container),
            read_only,
        })
    }
}

/// `/a//b/` → `/a/b`.
fn normalize_abs(p: &str) -> String {
    let parts: Vec<&str> = p
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

/// `--network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// QEMU's user-mode network: outbound, published ports (`-p`).
    User,
    /// Only `lo`.
    None,
}

impl Network {
    pub fn as_str(self) -> &'static str {
        match self {
            Network::User => "user",
            Network::None => "none",
        }
    }
}

impl FromStr for Network {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "user" | "default" | "bridge" | "slirp4netns" => Ok(Network::User),
            "none" => Ok(Network::None),
            other => Err(format!("unsupported network {other:?} (user or none)")),
        }
    }
}

/// `-p [IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]`, checked by hull-oci's parser, kept as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish(pub String);

impl FromStr for Publish {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        s.parse::<hull_oci::publish::PortForward>()?;
        Ok(Publish(s.to_string()))
    }
}

/// `--memory 512m`: bytes (b, k, m, g suffixes; docker's minimum of 6 MB).
pub fn parse_memory(s: &str) -> Result<i64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').filter(|r| !r.is_empty()).unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let v: f64 = num
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| format!("{s:?} is not a size (like 512m or 2g)"))?;
    let bytes = (v * mult as f64) as i64;
    if bytes < 6 << 20 {
        return Err(format!("{s:?}: the minimum memory limit is 6m"));
    }
    Ok(bytes)
}

/// `--cpus 1.5`: a positive number of CPUs, at most the host's.
pub fn parse_cpus(s: &str) -> Result<f64, String> {
    let host = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as f64;
    let v: f64 = s
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite())
        .ok_or_else(|| format!("{s:?} is not a number"))?;
    if v < 0.01 || v > host {
        return Err(format!(
            "{s:?}: the range of CPUs is from 0.01 to {host:.2}, as there are only {host} CPUs available"
        ));
    }
    Ok(v)
}

/// `--name`: docker's rule.
pub fn parse_name(s: &str) -> Result<String, String> {
    let s = s.strip_prefix('/').unwrap_or(s);
    let ok = s.len() >= 2
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "invalid container name {s:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed (2 characters at least)"
        ))
    }
}

/// `--hostname`: what the kernel takes (64 bytes at most), in DNS's characters.
pub fn parse_hostname(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && !s.starts_with(['-', '.'])
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.".contains(c));
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "invalid hostname {s:?}: letters, digits, '-' and '.', 64 characters at most"
        ))
    }
}

/// `-w`: an absolute path.
pub fn parse_workdir(s: &str) -> Result<String, String> {
    if s.starts_with('/') {
        Ok(normalize_abs(s))
    } else {
        Err(format!(
            "the working directory {s:?} is invalid: it needs to be an absolute path"
        ))
    }
}

/// `-u`: the syntax only (names are looked up in the image later).
pub fn parse_user(s: &str) -> Result<String, String> {
    crate::users::check_syntax(s)
        .map(|()| s.to_string())
        .map_err(|e| e.to_string())
}

/// `-e`: `KEY=value`, or `KEY` alone (taken from hull's environment if set there).
pub fn parse_env(s: &str) -> Result<String, String> {
    let key = s.split_once('=').map(|(k, _)| k).unwrap_or(s);
    if key.is_empty() || key.contains(char::is_whitespace) {
        return Err(format!("invalid environment variable {s:?}: KEY=value"));
    }
    Ok(s.to_string())
}

/// `--annotation KEY=VALUE`: split at the first `=` (the value may be empty or contain `=`);
/// the key must not be empty.
pub fn parse_annotation(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        Some(_) => Err(format!(
            "invalid annotation {s:?}: the key is empty (KEY=VALUE)"
        )),
        None => Err(format!("invalid annotation {s:?}: no '=' (KEY=VALUE)")),
    }
}

/// The lines of an `--env-file`: `KEY=value` or `KEY`; blank lines and `#` comments skipped.
pub fn parse_env_file(text: &str) -> Result<Vec<String>, String> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i, l.trim_start()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .map(|(i, l)| parse_env(l).map_err(|e| format!("line {}: {e}", i + 1)))
        .collect()
}

/// `KEY` entries become `KEY=value` from `lookup`, or are dropped if it has none (docker).
pub fn expand_env(entries: Vec<String>, lookup: impl Fn(&str) -> Option<String>) -> Vec<String> {
    entries
        .into_iter()
        .filter_map(|e| {
            if e.contains('=') {
                Some(e)
            } else {
                lookup(&e).map(|v| format!("{e}={v}"))
            }
        })
        .collect()
}

/// `KEY=value` lists merged: later keys replace earlier ones in place, new keys are appended.
pub fn merge_env(lists: &[&[String]]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for e in lists.iter().flat_map(|l| l.iter()) {
        let key = e.split_once('=').map(|(k, _)| k).unwrap_or(e);
        match out
            .iter_mut()
            .find(|o| o.split_once('=').map(|(k, _)| k).unwrap_or(o) == key)
        {
            Some(slot) => *slot = e.clone(),
            None => out.push(e.clone()),
        }
    }
    out
}

/// The process's command line, as docker builds it: the entrypoint (`--entrypoint` replaces
/// the image's and drops the image's Cmd), then the arguments after the image, or else the
/// image's Cmd.
pub fn process_args(
    image: Option<&Config>,
    entrypoint: Option<&str>,
    args: &[String],
) -> Vec<String> {
    let (entry, default_cmd): (Vec<String>, Vec<String>) = match entrypoint {
        Some("") => (Vec::new(), Vec::new()),
        Some(e) => (vec![e.to_string()], Vec::new()),
        None => (
            image
                .and_then(|c| c.entrypoint().clone())
                .unwrap_or_default(),
            image.and_then(|c| c.cmd().clone()).unwrap_or_default(),
        ),
    };
    let cmd = if args.is_empty() {
        default_cmd
    } else {
        args.to_vec()
    };
    entry.into_iter().chain(cmd).collect()
}

/// The environment: PATH (the default if the image sets none), HOSTNAME, TERM with a
/// terminal, the image's, then the user's (`-e`, `--env-file`).
pub fn process_env(
    image: Option<&Config>,
    hostname: &str,
    tty: bool,
    user: &[String],
) -> Vec<String> {
    let image_env = image.and_then(|c| c.env().clone()).unwrap_or_default();
    let mut base = vec![DEFAULT_PATH.to_string(), format!("HOSTNAME={hostname}")];
    if tty {
        base.push("TERM=xterm".into());
    }
    merge_env(&[&base, &image_env, user])
}

/// What `hull run` asks for.
#[derive(Debug, Clone, Default)]
pub struct RunSpec {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: User,
    pub hostname: String,
    pub volumes: Vec<Volume>,
    pub memory: Option<i64>,
    pub cpus: Option<f64>,
    pub tty: bool,
    /// With `tty`: the size of our terminal (rows, columns), the container's first size.
    pub console_size: Option<(u16, u16)>,
    pub network: Option<Network>,
    pub publish: Vec<String>,
    pub read_only: bool,
    /// `--annotation`s, in order (a later key replaces an earlier one).
    pub annotations: Vec<(String, String)>,
}

/// The config.json of a run (runc's default spec, changed like docker).
pub fn build(r: &RunSpec) -> Value {
    let mut spec = hull_oci::default_spec();
    let caps: Vec<&str> = if r.user.uid == 0 {
        DEFAULT_CAPS.to_vec()
    } else {
        Vec::new()
    };
    let console = r
        .console_size
        .filter(|_| r.tty)
        .map(|(rows, cols)| json!({"height": rows, "width": cols}));
    spec["process"] = json!({
        "terminal": r.tty,
        "user": {
            "uid": r.user.uid,
            "gid": r.user.gid,
        },
        "args": r.args,
        "env": r.env,
        "cwd": r.cwd,
        "capabilities": {
            "bounding": DEFAULT_CAPS,
            "effective": caps,
            "permitted": caps,
        },
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 524288, "soft": 1024}],
        "noNewPrivileges": false,
    });
    if let Some(size) = console {
        spec["process"]["consoleSize"] = size;
    }
    if !r.user.additional_gids.is_empty() {
        spec["process"]["user"]["additionalGids"] = json!(r.user.additional_gids);
    }
    spec["hostname"] = json!(r.hostname);
    spec["root"]["readonly"] = json!(r.read_only);
    if !spec["mounts"].is_array() {
        spec["mounts"] = json!([]);
    }
    for v in &r.volumes {
        let Some(mounts) = spec["mounts"].as_array_mut() else {
            break;
        };
        mounts.push(json!({
            "type": "bind",
            "source": v.host,
            "destination": v.container,
            "options": ["rbind", if v.read_only { "ro" } else { "rw" }],
        }));
    }
    let linux = &mut spec["linux"];
    if let Some(m) = r.memory {
        linux["resources"]["memory"] = json!({"limit": m});
    }
    if let Some(c) = r.cpus {
        let period: u64 = 100_000;
        linux["resources"]["cpu"] =
            json!({"quota": (c * period as f64).round() as i64, "period": period});
    }
    let mut annotations: serde_json::Map<String, Value> = r
        .annotations
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    match r.network.unwrap_or(Network::User) {
        Network::User => {
            // No network namespace: hull gives the VM QEMU's user-mode network.
            if let Some(ns) = linux["namespaces"].as_array_mut() {
                ns.retain(|n| n["type"] != "network");
            }
            if !r.publish.is_empty() {
                annotations.insert(
                    hull_oci::publish::ANNOTATION_PUBLISH.into(),
                    json!(r.publish.join(",")),
                );
            }
        }
        Network::None => {}
    }
    if !annotations.is_empty() {
        spec["annotations"] = Value::Object(annotations);
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn image(entry: &[&str], cmd: &[&str], env: &[&str]) -> Config {
        let mut c = Config::default();
        if !entry.is_empty() {
            c.set_entrypoint(Some(strings(entry)));
        }
        c.set_cmd(Some(strings(cmd)));
        c.set_env(Some(strings(env)));
        c
    }

    #[test]
    fn entrypoint_and_cmd_like_docker() {
        let img = image(&["/entry", "-x"], &["default"], &[]);
        assert_eq!(
            process_args(Some(&img), None, &[]),
            strings(&["/entry", "-x", "default"])
        );
        assert_eq!(
            process_args(Some(&img), None, &strings(&["mine"])),
            strings(&["/entry", "-x", "mine"])
        );
        assert_eq!(
            process_args(Some(&img), Some("/other"), &[]),
            strings(&["/other"])
        );
        assert_eq!(
            process_args(Some(&img), Some(""), &strings(&["echo", "hi"])),
            strings(&["echo", "hi"])
        );
        assert!(process_args(None, None, &[]).is_empty());
    }

    #[test]
    fn env_is_merged_in_order() {
        let img = image(&[], &["sh"], &["PATH=/img/bin", "A=1", "B=2"]);
        let env = process_env(Some(&img), "abc", true, &strings(&["B=3", "C=4"]));
        assert_eq!(
            env,
            strings(&[
                "PATH=/img/bin",
                "HOSTNAME=abc",
                "TERM=xterm",
                "A=1",
                "B=3",
                "C=4"
            ])
        );
        let env = process_env(None, "h", false, &[]);
        assert_eq!(env, strings(&[DEFAULT_PATH, "HOSTNAME=h"]));
        let expanded = expand_env(strings(&["X", "Y", "Z=1"]), |k| {
            (k == "X").then(|| "from-host".to_string())
        });
        assert_eq!(expanded, strings(&["X=from-host", "Z=1"]));
        assert_eq!(
            parse_env_file("# c\n\nA=1\n  B\n").unwrap(),
            strings(&["A=1", "B"])
        );
        assert!(parse_env_file("A=1\n=x\n").unwrap_err().contains("line 2"));
    }

    #[test]
    fn flags_are_checked() {
        let v: Volume = "/srv/data:/data:ro".parse().unwrap();
        assert_eq!(
            v,
            Volume {
                host: "/srv/data".into(),
                container: "/data".into(),
                read_only: true
            }
        );
        assert!(!"/a:/b".parse::<Volume>().unwrap().read_only);
        for bad in ["data:/data", "/a:b", "/a", "/a:/b:xx", "/a:/", "/a:/b:ro:x"] {
            assert!(bad.parse::<Volume>().is_err(), "{bad}");
        }
        assert_eq!(parse_memory("512m").unwrap(), 512 << 20);
        assert_eq!(parse_memory("1g").unwrap(), 1 << 30);
        assert_eq!(parse_memory("1.5GB").unwrap(), 3 << 29);
        assert_eq!(parse_memory("8388608").unwrap(), 8 << 20);
        for bad in ["", "x", "12q", "1k", "-5m"] {
            assert!(parse_memory(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_cpus("1").unwrap(), 1.0);
        for bad in ["0", "abc", "1000", "NaN"] {
            assert!(parse_cpus(bad).is_err(), "{bad}");
        }
        assert!(parse_name("web-1").is_ok());
        for bad in ["a", "-x", "a b", "a/b"] {
            assert!(parse_name(bad).is_err(), "{bad}");
        }
        assert!("8080:80".parse::<Publish>().is_ok());
        assert!("80".parse::<Publish>().is_err());
        assert!(parse_workdir("rel").is_err());
        assert!(parse_hostname("web-1.local").is_ok());
        for bad in ["", "-x", "a b", &"x".repeat(65)] {
            assert!(parse_hostname(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_workdir("/a/b/").unwrap(), "/a/b");
        assert!("host".parse::<Network>().is_err());
        let kv = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert_eq!(
            parse_annotation("org.hull.vm.max_vcpus=2").unwrap(),
            kv("org.hull.vm.max_vcpus", "2")
        );
        assert_eq!(parse_annotation("a=b=c").unwrap(), kv("a", "b=c"));
        assert_eq!(parse_annotation("empty=").unwrap(), kv("empty", ""));
        let e = parse_annotation("novalue").unwrap_err();
        assert!(e.contains("\"novalue\"") && e.contains("no '='"), "{e}");
        let e = parse_annotation("=v").unwrap_err();
        assert!(e.contains("\"=v\"") && e.contains("key is empty"), "{e}");
        assert!(parse_annotation("").is_err());
    }

    #[test]
    fn config_has_what_was_asked() {
        let r = RunSpec {
            args: strings(&["sh"]),
            env: strings(&["A=1"]),
            cwd: "/w".into(),
            user: User {
                uid: 1000,
                gid: 100,
                additional_gids: vec![5],
            },
            hostname: "h".into(),
            volumes: vec!["/a:/b:ro".parse().unwrap()],
            memory: Some(256 << 20),
            cpus: Some(1.5),
            tty: true,
            console_size: Some((30, 100)),
            network: Some(Network::User),
            publish: strings(&["8080:80", "53:53/udp"]),
            read_only: true,
            annotations: vec![
                ("org.hull.vm.max_vcpus".into(), "4".into()),
                ("x.y".into(), "1".into()),
                ("x.y".into(), "2".into()),
                // -p wins over an annotation of its own.
                (hull_oci::publish::ANNOTATION_PUBLISH.into(), "1:1".into()),
            ],
        };
        let s = build(&r);
        assert_eq!(s["process"]["args"], json!(["sh"]));
        assert_eq!(s["process"]["terminal"], json!(true));
        assert_eq!(
            s["process"]["consoleSize"],
            json!({"height": 30, "width": 100})
        );
        assert_eq!(
            s["process"]["user"],
            json!({"uid": 1000, "gid": 100, "additionalGids": [5]})
        );
        assert_eq!(s["process"]["capabilities"]["effective"], json!([]));
        assert_eq!(s["hostname"], json!("h"));
        assert_eq!(s["root"]["readonly"], json!(true));
        let last = s["mounts"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(
            last,
            json!({"type": "bind", "source": "/a", "destination": "/b", "options": ["rbind", "ro"]})
        );
        assert_eq!(s["linux"]["resources"]["memory"]["limit"], json!(256 << 20));
        assert_eq!(
            s["linux"]["resources"]["cpu"],
            json!({"quota": 150000, "period": 100000})
        );
        assert!(!s["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["type"] == "network"));
        assert_eq!(
            s["annotations"][hull_oci::publish::ANNOTATION_PUBLISH],
            json!("8080:80,53:53/udp")
        );
        assert_eq!(s["annotations"]["org.hull.vm.max_vcpus"], json!("4"));
        assert_eq!(s["annotations"]["x.y"], json!("2"));
        assert_eq!(s["annotations"].as_object().unwrap().len(), 3);
        let none = build(&RunSpec {
            network: Some(Network::None),
            volumes: Vec::new(),
            ..r
        });
        assert!(none["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["type"] == "network"));
        // hull-oci accepts it.
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("rootfs")).unwrap();
        std::fs::write(d.path().join("config.json"), none.to_string()).unwrap();
        hull_oci::Bundle::load(d.path()).unwrap();
    }
}
