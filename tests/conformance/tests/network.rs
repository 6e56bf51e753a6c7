//! Networking and pods through real engines: podman (netavark) and dockerd driving the runtime
//! under test. Each test has its own private podman store ([`Podman`]) or daemons
//! ([`Dockerd::start_with_bridge`]) and its own network ([`TestNet`]: a /24 of 10/8 reserved
//! for this test process and a bridge name of its own), removed on drop.
//!
//! Traffic goes only to 127.0.0.1 and to addresses inside the test's own networks; every
//! request loop (host side and in-container shell loops) is bounded in attempts and time.
//! In-container fetches are `hull_testkit::net::wget_loop` (bounded by `timeout`: busybox
//! 1.35's static `wget -T` crashes).

use std::path::Path;
use std::time::Duration;

use hull_conformance::assert_contains;
use hull_conformance::namespace_path;
use hull_testkit::engines::{free_port, unique_name, Dockerd, Podman};
use hull_testkit::net::{
    fetch_until_ok, fetched_body, httpd_script as serve, hull_taps, ingress_qdiscs, link_names,
    netns_inode, pids_in_netns, processes_mentioning, wget_loop as fetch_loop, TestNet,
};
use hull_testkit::wait::{pid_alive, wait_for};
use serde_json::Value;

/// How long a published port may take to answer (a VM boots under TCG first).
const SERVE_DEADLINE: Duration = Duration::from_secs(120);
/// Attempts of the host-side fetch loop (one every ~250 ms, each ≤ 2 s).
const SERVE_ATTEMPTS: u32 = 400;

/// `podman run ULIMITS EXTRA… IMAGE CMD…`.
fn run_args<'a>(extra: &[&'a str], cmd: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["run"];
    a.extend(Podman::ULIMITS);
    a.extend(extra);
    a.push(Podman::IMAGE);
    a.extend(cmd);
    a
}

/// What podman knows about a container's network, for failure messages.
fn podman_diag(p: &Podman, name: &str) -> String {
    let logs = p.podman(&["logs", name]);
    let inspect = p.podman(&[
        "inspect",
        "--format",
        "{{.State.Status}} {{json .NetworkSettings}}",
        name,
    ]);
    format!("--- podman logs {name} ---\n{logs}\n--- podman inspect {name} ---\n{inspect}")
}

/// `.NetworkSettings.Networks.<net>.<field>` of a podman container.
fn podman_net_field(p: &Podman, name: &str, net: &TestNet, field: &str) -> String {
    let format = format!(
        "{{{{(index .NetworkSettings.Networks \"{}\").{field}}}}}",
        net.name()
    );
    p.podman(&["inspect", "--format", &format, name])
        .ok()
        .stdout
        .trim()
        .to_owned()
}

/// `linux.namespaces` of a captured config.json as `type=path` (or just `type`) strings.
fn namespaces(config: &Value) -> Vec<String> {
    config["linux"]["namespaces"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|ns| {
                    let t = ns["type"].as_str().unwrap_or("?");
                    match ns["path"].as_str() {
                        Some(p) => format!("{t}={p}"),
                        None => t.to_owned(),
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A summary of what the engine put in config.json about the network, printed for the logs.
fn describe_config(what: &str, config: &Value) {
    let mounts: Vec<String> = config["mounts"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter(|m| {
                    let d = m["destination"].as_str().unwrap_or("");
                    d.starts_with("/etc/") || d == "/dev/shm" || d.starts_with("/run/")
                })
                .map(|m| format!("{} <- {}", m["destination"], m["source"]))
                .collect()
        })
        .unwrap_or_default();
    eprintln!(
        "{what}: namespaces {:?}; hostname {}; hooks {}; network-related mounts {mounts:?}",
        namespaces(config),
        config["hostname"],
        config["hooks"]
    );
}

#[test]
fn podman_publish_port_serves_page_to_host() {
    let p = Podman::new();
    let net = p.create_network(&[]);
    let port = free_port();
    let name = unique_name("web");
    let publish = format!("127.0.0.1:{port}:8080");
    let script = serve("8080", "hello-hull");
    let id = p
        .podman(&run_args(
            &[
                "-d",
                "--name",
                &name,
                "--network",
                net.name(),
                "-p",
                &publish,
            ],
            &["sh", "-c", &script],
        ))
        .ok()
        .stdout
        .trim()
        .to_owned();

    let body = fetch_until_ok(
        &format!("127.0.0.1:{port}"),
        "/",
        SERVE_DEADLINE,
        SERVE_ATTEMPTS,
    )
    .unwrap_or_else(|e| {
        panic!(
            "the page published with -p {publish} was not served: {e}\n{}",
            podman_diag(&p, &name)
        )
    });
    assert_eq!(body, "hello-hull\n", "wrong page through -p {publish}");
    p.runtime().assert_called("create");

    // podman configured a netns of its own (netavark) and named it in config.json.
    let config = p.runtime().bundle_config(&id);
    describe_config("podman -p container", &config);
    let netns = namespace_path(&config, "network").unwrap_or_default();
    let sandbox_key = p
        .podman(&[
            "inspect",
            "--format",
            "{{.NetworkSettings.SandboxKey}}",
            &name,
        ])
        .ok()
        .stdout
        .trim()
        .to_owned();
    assert_eq!(
        netns, sandbox_key,
        "config.json's network namespace should be the netns podman configured"
    );
}

#[test]
fn podman_loopback_works_inside_container() {
    let p = Podman::new();
    let net = p.create_network(&[]);
    let script = format!(
        "ip link show lo; mkdir -p /www && echo hello-lo > /www/index.html && \
         httpd -p 127.0.0.1:8081 -h /www && {}",
        fetch_loop("http://127.0.0.1:8081/")
    );
    let out = p
        .podman(&run_args(
            &["--rm", "--network", net.name()],
            &["sh", "-c", &script],
        ))
        .ok();
    let lo = out
        .stdout
        .lines()
        .find(|l| l.contains(": lo:"))
        .unwrap_or_else(|| panic!("`ip link show lo` printed no lo line:\n{out}"));
    let flags = lo
        .split('<')
        .nth(1)
        .and_then(|f| f.split('>').next())
        .unwrap_or("");
    assert!(
        flags.split(',').any(|f| f == "UP"),
        "lo is not UP in the container: {lo}"
    );
    assert_eq!(
        fetched_body(&out.stdout),
        "hello-lo",
        "httpd on 127.0.0.1 not reachable over loopback in the same container:\n{out}"
    );
}

#[test]
fn podman_two_containers_reach_each_other_by_ip_and_name() {
    let p = Podman::new();
    let net = p.create_network(&[]);
    let server = unique_name("srv");
    let script = serve("8080", "hello-peer");
    p.podman(&run_args(
        &["-d", "--name", &server, "--network", net.name()],
        &["sh", "-c", &script],
    ))
    .ok();
    let ip = podman_net_field(&p, &server, &net, "IPAddress");
    assert!(
        net.contains(&ip),
        "server address {ip:?} is not in the test's network {}\n{}",
        net.subnet(),
        podman_diag(&p, &server)
    );

    // The client asks only the network's own resolver (aardvark-dns on the gateway), never
    // the host's upstream servers that podman would otherwise add to resolv.conf.
    let gateway = net.gateway();
    let client = |url: &str| {
        let script = fetch_loop(url);
        p.podman(&run_args(
            &["--rm", "--network", net.name(), "--dns", &gateway],
            &["sh", "-c", &script],
        ))
    };
    let by_ip = client(&format!("http://{ip}:8080/"));
    assert!(
        by_ip.success(),
        "client could not reach the server by IP {ip}:\n{by_ip}\n{}",
        podman_diag(&p, &server)
    );
    assert_eq!(fetched_body(&by_ip.stdout), "hello-peer", "{by_ip}");

    let dns = p
        .podman(&[
            "network",
            "inspect",
            "--format",
            "{{.DNSEnabled}}",
            net.name(),
        ])
        .ok();
    if dns.stdout.trim() != "true" {
        eprintln!(
            "network {} has no DNS (aardvark-dns missing? apt-get install aardvark-dns): \
             checked by IP only",
            net.name()
        );
        return;
    }
    let by_name = client(&format!("http://{server}:8080/"));
    assert!(
        by_name.success(),
        "client could not reach the server by name {server} (aardvark-dns on {gateway}):\n{by_name}\n{}",
        podman_diag(&p, &server)
    );
    assert_eq!(fetched_body(&by_name.stdout), "hello-peer", "{by_name}");
}

#[test]
fn podman_pod_members_share_loopback_and_hostname() {
    let p = Podman::new();
    let net = p.create_network(&[]);
    let pod = unique_name("pod");
    // The infra container runs under the runtime under test too: the private containers.conf
    // sets `[engine] runtime = "hull"` (and default_ulimits the sandbox allows).
    p.podman(&["pod", "create", "--name", &pod, "--network", net.name()])
        .ok();
    let web = unique_name("member-web");
    let script = serve("127.0.0.1:8082", "hello-pod");
    let web_id = p
        .podman(&run_args(
            &["-d", "--pod", &pod, "--name", &web],
            &["sh", "-c", &script],
        ))
        .ok()
        .stdout
        .trim()
        .to_owned();

    let script = format!(
        "echo hostname:$(hostname); {}",
        fetch_loop("http://127.0.0.1:8082/")
    );
    let out = p.podman(&run_args(&["--rm", "--pod", &pod], &["sh", "-c", &script]));
    assert!(
        out.success(),
        "second pod member could not fetch 127.0.0.1:8082 from the first:\n{out}\n{}",
        podman_diag(&p, &web)
    );
    assert_eq!(fetched_body(&out.stdout), "hello-pod", "{out}");
    let client_host = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("hostname:"))
        .unwrap_or_else(|| panic!("no hostname line:\n{out}"))
        .to_owned();
    let web_host = p.podman(&["exec", &web, "hostname"]).ok();
    assert_eq!(
        web_host.stdout.trim(),
        client_host,
        "pod members see different hostnames"
    );
    assert_eq!(
        client_host, pod,
        "podman names the pod's UTS namespace after the pod"
    );

    // What the lead's runtime gets: the infra container went through the runtime under test,
    // with the netns podman configured; members name /proc/<infra pid-file PID>/ns/*.
    let infra_id = p
        .podman(&["pod", "inspect", "--format", "{{.InfraContainerID}}", &pod])
        .ok()
        .stdout
        .trim()
        .to_owned();
    let infra = p.runtime().bundle_config(&infra_id);
    describe_config("pod infra", &infra);
    let infra_pid = p.pid(&infra_id);
    let member = p.runtime().bundle_config(&web_id);
    describe_config("pod member", &member);
    for kind in ["network", "ipc", "uts"] {
        assert_eq!(
            namespace_path(&member, kind),
            Some(format!(
                "/proc/{infra_pid}/ns/{}",
                if kind == "network" { "net" } else { kind }
            )),
            "member's {kind} namespace should be the infra container's (pid-file PID {infra_pid})"
        );
    }
}

#[test]
fn podman_network_none_has_only_loopback() {
    let p = Podman::new();
    let out = p
        .podman(&run_args(
            &["--rm", "--network", "none"],
            &["ip", "-o", "link"],
        ))
        .ok();
    assert_eq!(
        link_names(&out.stdout),
        ["lo"],
        "--network none should leave only lo:\n{out}"
    );
    assert_contains(&out.stdout, "UP");
}

#[test]
fn podman_mac_mtu_addresses_and_routes_match_the_engine() {
    let p = Podman::new();
    let net = p.create_network(&["--opt", "mtu=1400"]);
    let name = unique_name("mtu");
    p.podman(&run_args(
        &["-d", "--name", &name, "--network", net.name()],
        &["sleep", "1000"],
    ))
    .ok();
    let mac = podman_net_field(&p, &name, &net, "MacAddress");
    let ip = podman_net_field(&p, &name, &net, "IPAddress");
    assert!(mac.len() == 17, "podman reports no MAC: {mac:?}");

    let link = p
        .podman(&["exec", &name, "ip", "-o", "link", "show", "eth0"])
        .ok();
    assert_contains(&link.stdout, "mtu 1400 ");
    assert_contains(&link.stdout, &format!("link/ether {mac} "));
    let addr = p
        .podman(&["exec", &name, "ip", "-o", "-4", "addr", "show", "eth0"])
        .ok();
    assert_contains(&addr.stdout, &format!("inet {ip}/24 "));
    let routes = p.podman(&["exec", &name, "ip", "-4", "route"]).ok();
    assert_contains(
        &routes.stdout,
        &format!("default via {} dev eth0", net.gateway()),
    );
}

#[test]
fn docker_publish_port_serves_page_to_host() {
    let d = Dockerd::start_with_bridge();
    let net = d.bridge().expect("a bridge network").clone();
    let image = d.load_busybox();
    let port = free_port();
    let name = unique_name("dweb");
    let publish = format!("127.0.0.1:{port}:8080");
    let script = serve("8080", "hello-docker");
    let id = d
        .docker(&[
            "run",
            "-d",
            "--runtime",
            Dockerd::RUNTIME,
            "--name",
            &name,
            "-p",
            &publish,
            image,
            "sh",
            "-c",
            &script,
        ])
        .ok()
        .stdout
        .trim()
        .to_owned();
    let body = fetch_until_ok(
        &format!("127.0.0.1:{port}"),
        "/",
        SERVE_DEADLINE,
        SERVE_ATTEMPTS,
    )
    .unwrap_or_else(|e| {
        let logs = d.docker(&["logs", &name]);
        let inspect = d.docker(&["inspect", "--format", "{{json .NetworkSettings}}", &name]);
        panic!("docker -p {publish} did not serve the page: {e}\n{logs}\n{inspect}")
    });
    assert_eq!(body, "hello-docker\n");
    d.runtime().assert_called("create");
    let ip = d
        .docker(&[
            "inspect",
            "--format",
            "{{.NetworkSettings.IPAddress}}",
            &name,
        ])
        .ok();
    assert!(
        net.contains(ip.stdout.trim()),
        "container address not on the test's bridge {}: {ip}",
        net.subnet()
    );

    // What the runtime gets from docker: a new netns (no path) that dockerd's prestart hook
    // (libnetwork-setkey) fills with the veth once the runtime has created it.
    let config = d.runtime().bundle_config(&id);
    describe_config("docker container", &config);
    assert_eq!(namespace_path(&config, "network"), None);
    let prestart = config["hooks"]["prestart"].to_string();
    assert_contains(&prestart, "libnetwork-setkey");
}

#[test]
fn sigkill_of_runtime_process_then_rm_leaves_no_network_leftovers() {
    let p = Podman::new();
    let net = p.create_network(&[]);
    let name = unique_name("victim");
    let id = p
        .podman(&run_args(
            &["-d", "--name", &name, "--network", net.name()],
            &["sleep", "1000"],
        ))
        .ok()
        .stdout
        .trim()
        .to_owned();
    let pid = p.pid(&name);
    assert!(pid > 0, "no pid-file PID for a running container");
    let sandbox = p
        .podman(&[
            "inspect",
            "--format",
            "{{.NetworkSettings.SandboxKey}}",
            &name,
        ])
        .ok()
        .stdout
        .trim()
        .to_owned();
    let inode = netns_inode(Path::new(&sandbox))
        .unwrap_or_else(|| panic!("container netns {sandbox:?} does not exist"));
    let taps_before = hull_taps(None);
    let ingress_before = ingress_qdiscs(None);
    eprintln!(
        "in the container's netns while running: taps {:?}, ingress qdiscs {:?}",
        hull_taps(Some(Path::new(&sandbox))),
        ingress_qdiscs(Some(Path::new(&sandbox)))
    );

    // SIGKILL the runtime's pid-file process (runc: the container's init; hull: its monitor).
    let killed = unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    assert_eq!(killed, 0, "kill -9 {pid} failed");
    wait_for(
        "the killed pid-file process to go",
        Duration::from_secs(60),
        || (!pid_alive(pid as i32)).then_some(()),
    );
    p.podman(&["rm", "--force", "--time", "0", &name]).ok();
    p.podman(&["container", "exists", &name]).expect_code(1);

    let leftovers =
        wait_for_no_leftovers(&id, &sandbox, inode, &net, &taps_before, &ingress_before);
    assert!(
        leftovers.is_empty(),
        "left behind after SIGKILL of the pid-file process and `podman rm -f`:\n  {}",
        leftovers.join("\n  ")
    );
}

/// Polls (bounded) until nothing of the container's network is left; returns what still is.
fn wait_for_no_leftovers(
    id: &str,
    sandbox: &str,
    inode: u64,
    net: &TestNet,
    taps_before: &[String],
    ingress_before: &[String],
) -> Vec<String> {
    let check = || {
        let mut left = Vec::new();
        let ns = Path::new(sandbox);
        if ns.exists() {
            left.push(format!("netns file {sandbox}"));
            let taps = hull_taps(Some(ns));
            if !taps.is_empty() {
                left.push(format!("taps in {sandbox}: {taps:?}"));
            }
            let ingress = ingress_qdiscs(Some(ns));
            if !ingress.is_empty() {
                left.push(format!("ingress qdiscs in {sandbox}: {ingress:?}"));
            }
        }
        let pids = pids_in_netns(inode);
        if !pids.is_empty() {
            left.push(format!(
                "processes still in the container's netns: {pids:?}"
            ));
        }
        for proc_ in processes_mentioning(id) {
            left.push(format!("process naming the container: {proc_}"));
        }
        for tap in hull_taps(None) {
            if !taps_before.contains(&tap) {
                left.push(format!("new {tap} in the host's netns"));
            }
        }
        for q in ingress_qdiscs(None) {
            if !ingress_before.contains(&q) {
                left.push(format!("new ingress qdisc in the host's netns: {q}"));
            }
        }
        let ports = net.bridge_ports();
        if !ports.is_empty() {
            left.push(format!("still on bridge {}: {ports:?}", net.bridge()));
        }
        left
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    wait_for("leftovers to go", Duration::from_secs(40), || {
        let left = check();
        (left.is_empty() || std::time::Instant::now() >= deadline).then_some(left)
    })
}
