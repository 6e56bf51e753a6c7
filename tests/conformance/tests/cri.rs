//! The Kubernetes path without kubelet: containerd 1.6's CRI plugin in a private containerd
//! ([`Containerd::start_cri`]), driven over its unix socket with the `k8s-cri` crate exactly
//! as kubelet would: RunPodSandbox → CreateContainer ×2 → StartContainer ×2 → ExecSync →
//! StopPodSandbox → RemovePodSandbox. The runtime under test is the CRI runtime handler
//! `hull` (`io.containerd.runc.v2` with `BinaryName` = the runtime); the pod's network is a
//! CNI bridge of the test's own with a /24 of its own. Traffic stays on 127.0.0.1 inside the pod.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hull_conformance::namespace_path;
use hull_testkit::engines::{unique_name, Containerd};
use hull_testkit::net::{
    fetched_body, httpd_script, mounts_under, processes_mentioning, wget_loop,
};
use hull_testkit::wait::wait_for;
use hyper_util::rt::TokioIo;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, CreateContainerRequest, ExecSyncRequest, ImageSpec,
    LinuxContainerConfig, LinuxContainerSecurityContext, LinuxPodSandboxConfig,
    LinuxSandboxSecurityContext, ListContainersRequest, ListPodSandboxRequest, NamespaceMode,
    NamespaceOption, PodSandboxConfig, PodSandboxMetadata, RemovePodSandboxRequest,
    RunPodSandboxRequest, StartContainerRequest, StatusRequest, StopPodSandboxRequest,
    VersionRequest,
};
use serde_json::Value;
use tonic::transport::{Channel, Endpoint, Uri};

/// Deadline of one CRI call (creating a container boots a VM under TCG for hull).
const CALL_TIMEOUT: Duration = Duration::from_secs(180);
/// How long the CRI plugin may take to report its runtime and network ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

type Client = RuntimeServiceClient<Channel>;

/// Awaits `fut` (a CRI call) for at most [`CALL_TIMEOUT`]; panics naming `what` on error.
async fn call<T>(
    what: &str,
    fut: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> T {
    match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Ok(Ok(r)) => r.into_inner(),
        Ok(Err(status)) => panic!("CRI {what} failed: {status}"),
        Err(_) => panic!("CRI {what} did not answer within {CALL_TIMEOUT:?}"),
    }
}

async fn connect(socket: PathBuf) -> Client {
    let channel = Endpoint::try_from("http://[::]:50051")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = socket.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .unwrap_or_else(|e| panic!("cannot connect to containerd's CRI socket: {e}"));
    RuntimeServiceClient::new(channel)
}

/// Waits (bounded) until `Status` reports RuntimeReady and NetworkReady.
async fn wait_ready(client: &mut Client) {
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    loop {
        let last = match client.status(StatusRequest { verbose: false }).await {
            Ok(r) => {
                let conditions = r
                    .into_inner()
                    .status
                    .map(|s| s.conditions)
                    .unwrap_or_default();
                if conditions.len() >= 2 && conditions.iter().all(|c| c.status) {
                    return;
                }
                format!("{conditions:?}")
            }
            Err(e) => e.to_string(),
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "the CRI plugin was not ready within {READY_TIMEOUT:?}: {last}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// kubelet's defaults: network and IPC shared by the pod, a PID namespace per container.
fn namespace_options() -> NamespaceOption {
    NamespaceOption {
        network: NamespaceMode::Pod as i32,
        pid: NamespaceMode::Container as i32,
        ipc: NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

fn container_config(name: &str, command: Vec<String>) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.to_owned(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: hull_testkit::image::LOCAL_NAME.to_owned(),
            ..Default::default()
        }),
        command,
        log_path: format!("{name}.log"),
        linux: Some(LinuxContainerConfig {
            resources: None,
            security_context: Some(LinuxContainerSecurityContext {
                namespace_options: Some(namespace_options()),
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

fn sh(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

fn describe_config(what: &str, config: &Value) {
    let namespaces: Vec<String> = config["linux"]["namespaces"]
        .as_array()
        .map(|a| a.iter().map(|n| n.to_string()).collect())
        .unwrap_or_default();
    let mounts: Vec<String> = config["mounts"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter(|m| {
                    let d = m["destination"].as_str().unwrap_or("");
                    d.starts_with("/etc/") || d == "/dev/shm"
                })
                .map(|m| format!("{} <- {}", m["destination"], m["source"]))
                .collect()
        })
        .unwrap_or_default();
    eprintln!(
        "{what}: namespaces {namespaces:?}; hostname {}; hooks {}; mounts {mounts:?}; annotations {}",
        config["hostname"], config["hooks"], config["annotations"]
    );
}

/// PID of the task `id` in the `k8s.io` namespace (`ctr task ls`).
fn task_pid(c: &Containerd, id: &str) -> Option<u32> {
    let ls = c.ctr(&["-n", "k8s.io", "task", "ls"]).ok();
    ls.stdout.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.first() == Some(&id)).then(|| f[1].parse().unwrap())
    })
}

/// Addresses host-local still has allocated (files named like an IPv4 address).
fn allocated_addresses(ipam_dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for net in std::fs::read_dir(ipam_dir).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(net.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = f.file_name().to_string_lossy().into_owned();
            if name.parse::<std::net::Ipv4Addr>().is_ok() {
                out.push(name);
            }
        }
    }
    out
}

#[test]
fn cri_pod_with_two_containers_talks_over_localhost_and_leaves_nothing() {
    let c = Containerd::start_cri();
    let cri = c.cri().expect("CRI setup");
    let net = cri.net().clone();
    let pod = unique_name("pod");
    let port = 8083;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (sandbox_id, web_id, client_id) = rt.block_on(async {
        let mut client = connect(c.socket().to_path_buf()).await;
        let version = call("Version", client.version(VersionRequest::default())).await;
        eprintln!(
            "CRI: {} {} (API {})",
            version.runtime_name, version.runtime_version, version.runtime_api_version
        );
        wait_ready(&mut client).await;

        let sandbox_config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: pod.clone(),
                uid: format!("uid-{pod}"),
                namespace: "default".into(),
                attempt: 0,
            }),
            hostname: pod.clone(),
            log_directory: cri.log_dir().join(&pod).display().to_string(),
            linux: Some(LinuxPodSandboxConfig {
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(namespace_options()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let sandbox_id = call(
            "RunPodSandbox",
            client.run_pod_sandbox(RunPodSandboxRequest {
                config: Some(sandbox_config.clone()),
                runtime_handler: hull_testkit::cri::RUNTIME_HANDLER.into(),
            }),
        )
        .await
        .pod_sandbox_id;

        let mut ids = Vec::new();
        for (name, command) in [
            ("web", sh(&httpd_script(&format!("127.0.0.1:{port}"), "hello-cri"))),
            ("client", vec!["sleep".into(), "1000000".into()]),
        ] {
            let id = call(
                "CreateContainer",
                client.create_container(CreateContainerRequest {
                    pod_sandbox_id: sandbox_id.clone(),
                    config: Some(container_config(name, command)),
                    sandbox_config: Some(sandbox_config.clone()),
                }),
            )
            .await
            .container_id;
            call(
                "StartContainer",
                client.start_container(StartContainerRequest {
                    container_id: id.clone(),
                }),
            )
            .await;
            ids.push(id);
        }

        let exec = call(
            "ExecSync",
            client.exec_sync(ExecSyncRequest {
                container_id: ids[1].clone(),
                cmd: sh(&wget_loop(&format!("http://127.0.0.1:{port}/"))),
                timeout: 120,
            }),
        )
        .await;
        let stdout = String::from_utf8_lossy(&exec.stdout);
        let stderr = String::from_utf8_lossy(&exec.stderr);
        assert_eq!(
            exec.exit_code, 0,
            "ExecSync wget in the second container failed\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
        );
        assert_eq!(fetched_body(&stdout), "hello-cri", "{stdout}");

        // Capture what the runtime was given while the pod is still up.
        let sandbox_pid = task_pid(&c, &sandbox_id);

        call(
            "StopPodSandbox",
            client.stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: sandbox_id.clone(),
            }),
        )
        .await;
        call(
            "RemovePodSandbox",
            client.remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: sandbox_id.clone(),
            }),
        )
        .await;
        let pods = call(
            "ListPodSandbox",
            client.list_pod_sandbox(ListPodSandboxRequest { filter: None }),
        )
        .await;
        assert!(pods.items.is_empty(), "sandboxes left: {:?}", pods.items);
        let containers = call(
            "ListContainers",
            client.list_containers(ListContainersRequest { filter: None }),
        )
        .await;
        assert!(
            containers.containers.is_empty(),
            "containers left: {:?}",
            containers.containers
        );

        // What the runtime under test was given (the lead's contract for pods over CRI).
        let sandbox = c.runtime().bundle_config(&sandbox_id);
        describe_config("CRI sandbox", &sandbox);
        let netns = namespace_path(&sandbox, "network")
            .expect("the CRI sandbox's config.json names the netns CNI configured");
        assert!(
            Path::new(&netns).starts_with(c.dir()),
            "netns {netns} not under the containerd's own dir (netns_mounts_under_state_dir)"
        );
        let sandbox_pid = sandbox_pid.expect("sandbox task PID");
        for id in [&ids[0], &ids[1]] {
            let member = c.runtime().bundle_config(id);
            describe_config("CRI pod member", &member);
            for (kind, file) in [("network", "net"), ("ipc", "ipc"), ("uts", "uts")] {
                assert_eq!(
                    namespace_path(&member, kind),
                    Some(format!("/proc/{sandbox_pid}/ns/{file}")),
                    "CRI member's {kind} namespace should be the sandbox's (pid-file PID {sandbox_pid})"
                );
            }
            assert_eq!(namespace_path(&member, "pid"), None);
        }
        (sandbox_id, ids[0].clone(), ids[1].clone())
    });
    drop(rt);
    eprintln!("pod {sandbox_id}: web {web_id}, client {client_id} removed");

    // Nothing of the pod is left: no process but containerd itself naming its dir (shims,
    // the runtime's processes), no mount under it (rootfs, shm, the netns bind mount), no
    // veth on the bridge, no address held by host-local.
    let dir = c.dir().to_path_buf();
    let daemon = c.daemon_pid().to_string();
    let ipam_dir = cri.ipam_dir().to_path_buf();
    let leftovers = || {
        let mut left: Vec<String> = processes_mentioning(&dir.to_string_lossy())
            .into_iter()
            .filter(|p| p.split(' ').next() != Some(daemon.as_str()))
            .map(|p| format!("process {p}"))
            .collect();
        left.extend(mounts_under(&dir).into_iter().map(|m| format!("mount {m}")));
        left.extend(
            net.bridge_ports()
                .into_iter()
                .map(|p| format!("bridge port {p}")),
        );
        left.extend(
            allocated_addresses(&ipam_dir)
                .into_iter()
                .map(|a| format!("address {a} still allocated")),
        );
        left
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let left = wait_for("the pod's leftovers to go", Duration::from_secs(40), || {
        let left = leftovers();
        (left.is_empty() || std::time::Instant::now() >= deadline).then_some(left)
    });
    assert!(
        left.is_empty(),
        "left behind after RemovePodSandbox:\n  {}",
        left.join("\n  ")
    );
    // The CNI bridge plugin never deletes its bridge: the test does, and checks it is gone.
    net.delete_bridge();
    assert!(!net.bridge_exists(), "bridge {} still exists", net.bridge());
}
