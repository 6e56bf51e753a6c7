//! Fixtures for the netns tests: a uniquely named network namespace per test (removed on drop),
//! `ip`/`tc` run inside it for arranging and checking, and a way to run library code in it.
//! Nothing here touches the test process's own network namespace.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A named network namespace (`ip netns add`), deleted with everything in it on drop.
pub struct NetNs {
    pub name: String,
}

impl NetNs {
    pub fn new(tag: &str) -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("hullnet-{tag}-{}-{n}", std::process::id());
        run("ip", &["netns", "add", &name]);
        NetNs { name }
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// Runs `f` on a thread inside this namespace.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        hull_net::netns::in_netns(&self.path(), f)
            .unwrap_or_else(|e| panic!("running in {}: {e}", self.name))
    }

    /// `ip -n NS ARGS`, which must succeed; its stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// `ip -j -n NS ARGS` parsed.
    pub fn ip_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["-j"];
        all.extend_from_slice(args);
        parse(&self.ip(&all))
    }

    /// `tc -j -n NS ARGS` parsed.
    pub fn tc_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["-j", "-n", self.name.as_str()];
        all.extend_from_slice(args);
        parse(&run("tc", &all))
    }

    /// `tc -n NS ARGS`, which must succeed; its stdout.
    pub fn tc(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run("tc", &all)
    }

    /// The link called `name` (`ip -j link show`), `None` if there is none.
    pub fn link(&self, name: &str) -> Option<Value> {
        let links = self.ip_json(&["link", "show"]);
        links
            .as_array()?
            .iter()
            .find(|l| l["ifname"] == name)
            .cloned()
    }

    /// Whether `dev` has an ingress qdisc.
    pub fn has_ingress(&self, dev: &str) -> bool {
        let qdiscs = self.tc_json(&["qdisc", "show", "dev", dev]);
        array(&qdiscs).iter().any(|q| q["kind"] == "ingress")
    }

    /// The devices that `dev`'s ingress u32 `protocol all` filters redirect to (egress).
    pub fn redirect_targets(&self, dev: &str) -> Vec<String> {
        let filters = self.tc_json(&["filter", "show", "dev", dev, "ingress"]);
        let mut out = Vec::new();
        for f in array(&filters) {
            if f["kind"] != "u32" || f["protocol"] != "all" {
                continue;
            }
            for action in array(&f["options"]["actions"]) {
                if action["kind"] == "mirred"
                    && action["mirred_action"] == "redirect"
                    && action["direction"] == "egress"
                {
                    out.push(action["to_dev"].as_str().unwrap_or("?").to_owned());
                }
            }
        }
        out
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

pub fn array(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}

fn parse(text: &str) -> Value {
    if text.trim().is_empty() {
        return Value::Array(Vec::new());
    }
    serde_json::from_str(text).unwrap_or_else(|e| panic!("parsing {text:?}: {e}"))
}

/// Runs a command that must succeed; its stdout.
pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `ADDR/LEN` strings of `ip -j addr show dev DEV`.
pub fn addresses(ns: &NetNs, dev: &str) -> Vec<String> {
    let links = ns.ip_json(&["addr", "show", "dev", dev]);
    let mut out = Vec::new();
    for link in array(&links) {
        for a in array(&link["addr_info"]) {
            out.push(format!(
                "{}/{}",
                a["local"].as_str().unwrap_or("?"),
                a["prefixlen"]
            ));
        }
    }
    out
}
