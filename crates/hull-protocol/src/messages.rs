//! Control messages carried in `Control` frames as JSON.

use serde::{Deserialize, Serialize};

/// Identifies one process in the guest: 0 is the container's init process, every `exec` gets the
/// next number. Its stdio streams have ids `exec_id * 4 + {0,1,2}` (see [`StreamId`]).
pub type ExecId = u32;

/// The stream id of one stdio stream of one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamId(pub u32);

impl StreamId {
    /// Exec ids come from the host's requests: one above `u32::MAX / 4` wraps (as it always
    /// did in release builds) instead of overflowing.
    pub fn new(exec_id: ExecId, fd: u32) -> Self {
        debug_assert!(fd < 3);
        Self(exec_id.wrapping_mul(4).wrapping_add(fd))
    }
    pub fn stdin(exec_id: ExecId) -> Self {
        Self::new(exec_id, 0)
    }
    pub fn stdout(exec_id: ExecId) -> Self {
        Self::new(exec_id, 1)
    }
    pub fn stderr(exec_id: ExecId) -> Self {
        Self::new(exec_id, 2)
    }
    pub fn exec_id(self) -> ExecId {
        self.0 / 4
    }
    /// 0 = stdin, 1 = stdout, 2 = stderr.
    pub fn fd(self) -> u32 {
        self.0 % 4
    }
}

/// Everything the host sends: a request with an id the reply will carry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostMessage {
    pub id: u64,
    pub request: HostRequest,
}

/// Requests from host to agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum HostRequest {
    /// First message on a new channel. Reply: [`Reply::Hello`].
    Hello { version: u8 },
    /// Configure the guest's network (interfaces found by MAC, addresses, routes) before the
    /// first container is created. `lo` is always up without it. Reply: `Ok`.
    ConfigureNetwork(Box<crate::NetworkConfig>),
    /// The VM was restored from a template (a copy of another VM's memory): mix `entropy`
    /// (fresh host randomness, at least 32 bytes) into the kernel's pool and reseed its CRNG,
    /// and set the realtime clock to `unix_time_ns`. Sent right after `Hello`. Reply: `Ok`.
    Restored { entropy: Vec<u8>, unix_time_ns: u64 },
    /// Mount the shared files and prepare the container like runc's `create`: its init is set up
    /// in its namespaces and root (createContainer hooks run) and waits. Reply: `Ok` once it
    /// waits, or the set-up error.
    CreateContainer(Box<ContainerConfig>),
    /// Start a process: exec id 0 releases the prepared init (startContainer hooks, then the
    /// spec's process); any other id execs `process` in the running container.
    /// Reply: [`Reply::Started`].
    StartProcess(Box<StartProcess>),
    /// Send a signal to one process (or with `all`, every process of the container). Reply: `Ok`.
    Signal {
        exec_id: ExecId,
        signal: i32,
        all: bool,
        /// With `all`: the container whose processes get it (`None`: the VM's first container).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        container: Option<String>,
    },
    /// Forget a container of a pod whose init has exited (its id may be created again). The
    /// VM's first container is never removed: its end is the VM's. Reply: `Ok`.
    RemoveContainer { id: String },
    /// Set the window size of a process's terminal. Reply: `Ok`.
    ResizeTty {
        exec_id: ExecId,
        rows: u16,
        cols: u16,
    },
    /// Resource usage of the container. Reply: [`Reply::Stats`].
    Stats,
    /// The container's processes (guest PIDs). Reply: [`Reply::Processes`].
    ListProcesses,
    /// Power the VM off now. Reply: `Ok` (then the channel goes away).
    Shutdown,
    /// The guest's view of its memory, CPUs and kernel (for the management API).
    /// Reply: [`Reply::GuestStatus`].
    GuestStatus,
    /// Put exactly `online` CPUs online (cpu0 .. cpu`online-1`, through
    /// `/sys/devices/system/cpu/cpuN/online`), the others offline. `online` must be at least 1
    /// and at most the CPUs the guest has. Reply: [`Reply::GuestStatus`] afterwards.
    SetOnlineCpus { online: u32 },
    /// `hull-runtime update`: write `resources` (an OCI `linux.resources`; 0 leaves a value
    /// alone) into the cgroup of `container` (`None`: the VM's first container). Reply: `Ok`;
    /// an error about a field carries it in [`AgentError::field`].
    UpdateResources {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        container: Option<String>,
        resources: Box<oci_spec::runtime::LinuxResources>,
    },
}

/// The container as the agent must set it up.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerConfig {
    /// Container id (for logs and the hostname default).
    pub id: String,
    /// The bundle's config.json as the host validated it. Mount sources of bind mounts are host
    /// paths and must not be used in the guest: see `binds`.
    pub spec: oci_spec::runtime::Spec,
    /// Path of the container's root inside the share (`SHARE_TAG`), relative to its root.
    pub rootfs: String,
    /// For each bind mount of `spec.mounts` (by index), its path inside the volumes share
    /// (`VOLUME_TAG`).
    pub binds: Vec<BindShare>,
    /// The bundle's host path, for the state that in-guest hooks get.
    pub bundle: String,
    /// The exec id of the container's init. 0 for the VM's first container (its exit ends the
    /// VM); a later container of the same pod gets a fresh exec id from the host, and its exit
    /// ends only that container.
    #[serde(default)]
    pub init_exec_id: ExecId,
}

/// A host path the host shares with the guest for a bind mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindShare {
    /// Index into `spec.mounts`.
    pub mount_index: usize,
    /// Path relative to the volumes share's root.
    pub share_path: String,
}

/// How to start one process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StartProcess {
    pub exec_id: ExecId,
    /// The exec'd process; `None` for the init (the spec's process, fixed at create).
    pub process: Option<oci_spec::runtime::Process>,
    /// Whether the host will send stdin data (otherwise stdin is /dev/null). The init's stdin
    /// is always relayed (the host sends data or its end).
    pub stdin: bool,
    /// The container an exec'd process runs in (`None`: the VM's first container). Ignored for
    /// a container's init (its exec id names it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

/// Everything the agent sends.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AgentMessage {
    /// The answer to the request with the same id.
    Reply {
        id: u64,
        result: Result<Reply, AgentError>,
    },
    /// Something that happened on its own.
    Event(AgentEvent),
}

/// Successful answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    Ok,
    Hello {
        version: u8,
        /// Guest CLOCK_BOOTTIME (ns) when the agent's main() began: kernel boot time.
        agent_start_ns: u64,
        /// Guest CLOCK_BOOTTIME (ns) when the agent was ready to serve.
        agent_ready_ns: u64,
    },
    Started {
        /// PID of the process in the guest's initial PID namespace.
        pid: i32,
        /// Guest CLOCK_BOOTTIME (ns) right after the process was spawned.
        started_ns: u64,
    },
    Stats(Stats),
    Processes {
        pids: Vec<i32>,
    },
    GuestStatus(GuestStatus),
}

/// The guest's view of itself: memory from `/proc/meminfo` (KiB), CPU time from `/proc/stat`,
/// CPUs from `/sys/devices/system/cpu`, the kernel's release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestStatus {
    pub mem_total_kib: u64,
    pub mem_free_kib: u64,
    pub mem_available_kib: u64,
    pub cached_kib: u64,
    /// Minor and major page faults since boot (`/proc/vmstat` `pgfault`, `pgmajfault`;
    /// `None` without the kernel's VM event counters).
    pub minor_faults: Option<u64>,
    pub major_faults: Option<u64>,
    /// user + nice + system time of all CPUs since boot, nanoseconds.
    pub cpu_time_ns: u64,
    /// CPUs online (what `nproc` counts).
    pub cpus_online: u32,
    /// CPUs present (the VM's vCPUs).
    pub cpus_present: u32,
    /// `uname -r`.
    pub kernel_release: String,
}

/// A failed request: what failed and why, in words for a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct AgentError {
    pub message: String,
    /// Set when the request asked for something the guest cannot do or its kernel refuses: the
    /// spec field at fault (`linux.resources.memory.limit`); `message` begins with it. The host
    /// reports such an error as an invalid bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl AgentError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            field: None,
        }
    }

    /// An error about spec field `field`: "`field`: `problem`".
    pub fn invalid(field: impl Into<String>, problem: impl Into<String>) -> Self {
        let field = field.into();
        Self {
            message: format!("{field}: {}", problem.into()),
            field: Some(field),
        }
    }

    /// The problem with [`Self::field`], without the field's name.
    pub fn problem(&self) -> &str {
        match &self.field {
            Some(f) => self
                .message
                .strip_prefix(f.as_str())
                .and_then(|m| m.strip_prefix(": "))
                .unwrap_or(&self.message),
            None => &self.message,
        }
    }
}

/// Events the agent sends without being asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AgentEvent {
    /// A process ended. Sent after the Eof frames of its stdout/stderr.
    Exited {
        exec_id: ExecId,
        status: ExitStatus,
        exited_ns: u64,
    },
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

impl ExitStatus {
    /// The status as a shell reports it: the code, or 128 + signal number. The numbers come
    /// from the guest: a signal no kernel has (`i32::MAX`) saturates instead of overflowing.
    pub fn shell_code(self) -> i32 {
        match self {
            Self::Code(c) => c,
            Self::Signal(s) => s.saturating_add(128),
        }
    }
}

/// Resource usage read from the guest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub memory_usage_bytes: u64,
    pub memory_total_bytes: u64,
    pub cpu_usage_ns: u64,
    pub pids: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_name_process_and_fd() {
        let s = StreamId::stderr(5);
        assert_eq!((s.exec_id(), s.fd()), (5, 2));
        assert_ne!(StreamId::stdout(1), StreamId::stdin(2));
    }

    #[test]
    fn exit_status_maps_signals_like_a_shell() {
        assert_eq!(ExitStatus::Code(7).shell_code(), 7);
        assert_eq!(ExitStatus::Signal(9).shell_code(), 137);
        assert_eq!(ExitStatus::Signal(i32::MAX).shell_code(), i32::MAX);
    }

    #[test]
    fn messages_round_trip_as_json() {
        let m = AgentMessage::Reply {
            id: 3,
            result: Err(AgentError::new("no such file")),
        };
        let j = serde_json::to_vec(&m).unwrap();
        let back: AgentMessage = serde_json::from_slice(&j).unwrap();
        assert!(
            matches!(back, AgentMessage::Reply { id: 3, result: Err(e) } if e.message == "no such file")
        );
        let e = AgentError::invalid("linux.resources.pids.limit", "refused");
        assert_eq!(e.message, "linux.resources.pids.limit: refused");
        assert_eq!(e.problem(), "refused");
        let j = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<AgentError>(&j).unwrap(), e);
        let plain: AgentError = serde_json::from_str(r#"{"message":"x"}"#).unwrap();
        assert_eq!(plain.problem(), "x");
        assert!(plain.field.is_none());
        let h = HostMessage {
            id: 1,
            request: HostRequest::Signal {
                exec_id: 0,
                signal: 15,
                all: false,
                container: None,
            },
        };
        let j = serde_json::to_string(&h).unwrap();
        assert!(j.contains("\"op\":\"signal\""), "{j}");
    }
}
