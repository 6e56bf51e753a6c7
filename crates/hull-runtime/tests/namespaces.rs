//! The PID engines see (the pid-file PID, hull's monitor) holds the ipc, uts and cgroup
//! namespaces the spec asks for, and the container's host name, as runc's container init does;
//! the container's own namespaces are in the guest.

mod common;

use common::{create_detached, Bundle, Root};
use serde_json::json;

fn ns(pid: &str, kind: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .unwrap()
        .display()
        .to_string()
}

#[test]
fn the_pid_file_pid_holds_the_specs_ipc_uts_and_cgroup_namespaces() {
    let root = Root::new();
    let mut b = Bundle::busybox(&["sleep", "1000"]);
    b.edit(|c| {
        c["hostname"] = json!("ns-test-host");
        c["linux"]["namespaces"] = json!([
            {"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"},
            {"type": "cgroup"}
        ]);
    });
    let pid = create_detached(&root, &b, "n").to_string();
    let pid = pid.as_str();
    for kind in ["ipc", "uts", "cgroup"] {
        assert_ne!(ns(pid, kind), ns("self", kind), "{kind} namespace of {pid}");
    }
    // Not asked for: the host's (network: no network namespace in the spec).
    assert_eq!(ns(pid, "net"), ns("self", "net"));
    let host = std::process::Command::new("nsenter")
        .args(["-t", pid, "-u", "hostname"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&host.stdout).trim(), "ns-test-host");
    let out = root.cmd(&["delete", "-f", "n"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    root.assert_clean("n");
}
