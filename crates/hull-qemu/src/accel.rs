//! Choosing the accelerator by probing, not by the existence of `/dev/kvm`.
//!
//! A `/dev/kvm` can exist and still be unable to run a standard guest kernel: nested PVM
//! (`kvm_pvm`) only runs PVM-built kernels and a normal kernel hangs silently under it. So KVM is
//! used only when (1) it is not PVM and (2) a tiny real-mode guest actually runs to `hlt` in a
//! child process within a deadline ([`crate::kvm_probe`]). Otherwise TCG, with a reason.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A QEMU accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

impl std::fmt::Display for Accel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Accel {
    type Err = AccelError;
    fn from_str(s: &str) -> Result<Self, AccelError> {
        match s {
            "kvm" => Ok(Accel::Kvm),
            "tcg" => Ok(Accel::Tcg),
            other => Err(AccelError::Unknown(other.to_string())),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AccelError {
    #[error("unknown accelerator {0:?} (expected \"kvm\" or \"tcg\")")]
    Unknown(String),
    #[error("accelerator kvm was forced but KVM cannot run a guest here: {0}")]
    KvmForcedUnusable(String),
}

/// The outcome of choosing: which accelerator, and why KVM was not taken (if it was not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccelChoice {
    pub accel: Accel,
    /// Set when TCG was chosen because KVM is unusable: the reason, for one notice line.
    pub kvm_unusable: Option<String>,
}

impl AccelChoice {
    /// One line telling the user that TCG is used and why, or `None` when nothing to say.
    pub fn notice(&self) -> Option<String> {
        self.kvm_unusable
            .as_ref()
            .map(|why| format!("hull: KVM unusable ({why}); using TCG software emulation (slower)"))
    }
}

/// Chooses the accelerator: `forced` (from `--accel`/`HULL_ACCEL`) wins, else the probe decides.
/// `probe_cmd` is a command that exits 0 when a KVM guest really runs (see `kvm_probe`).
pub fn choose(
    forced: Option<Accel>,
    probe_cmd: Option<Command>,
) -> Result<AccelChoice, AccelError> {
    let kvm_unusable = match forced {
        Some(Accel::Tcg) => None,
        _ => kvm_usable(probe_cmd).err(),
    };
    resolve(forced, kvm_unusable)
}

/// The choice, given what a (possibly cached) probe found: `kvm_unusable` is why KVM cannot run
/// a guest here, `None` if it can.
pub fn resolve(
    forced: Option<Accel>,
    kvm_unusable: Option<String>,
) -> Result<AccelChoice, AccelError> {
    match (forced, kvm_unusable) {
        (Some(Accel::Tcg), _) => Ok(AccelChoice {
            accel: Accel::Tcg,
            kvm_unusable: None,
        }),
        (Some(Accel::Kvm), Some(why)) => Err(AccelError::KvmForcedUnusable(why)),
        (_, None) => Ok(AccelChoice {
            accel: Accel::Kvm,
            kvm_unusable: None,
        }),
        (None, Some(why)) => Ok(AccelChoice {
            accel: Accel::Tcg,
            kvm_unusable: Some(why),
        }),
    }
}

/// Probe deadline: a real KVM runs the probe guest in well under a millisecond.
const PROBE_DEADLINE: Duration = Duration::from_secs(2);

/// `Ok` if KVM can run a standard guest here, else why not.
pub fn kvm_usable(probe_cmd: Option<Command>) -> Result<(), String> {
    if !Path::new("/dev/kvm").exists() {
        return Err("/dev/kvm does not exist".into());
    }
    if Path::new("/sys/module/kvm_pvm").exists() {
        return Err("/dev/kvm is nested PVM (kvm_pvm), which only runs PVM guest kernels".into());
    }
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        return Err(format!("cannot open /dev/kvm: {e}"));
    }
    let Some(mut cmd) = probe_cmd else {
        return Ok(());
    };
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run the KVM probe: {e}"))?;
    let deadline = Instant::now() + PROBE_DEADLINE;
    loop {
        match child.try_wait() {
            Ok(Some(st)) if st.success() => return Ok(()),
            Ok(Some(_)) => {
                let mut msg = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut msg);
                }
                return Err(format!("a test guest failed under KVM: {}", msg.trim()));
            }
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "a test guest did not run under KVM within {PROBE_DEADLINE:?}"
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => return Err(format!("waiting for the KVM probe: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forced_tcg_never_probes() {
        let c = choose(Some(Accel::Tcg), Some(Command::new("/nonexistent"))).unwrap();
        assert_eq!(
            c,
            AccelChoice {
                accel: Accel::Tcg,
                kvm_unusable: None
            }
        );
        assert_eq!(c.notice(), None);
    }

    #[test]
    fn forcing_kvm_where_it_cannot_run_is_an_error_with_the_reason() {
        let e = resolve(Some(Accel::Kvm), Some("PVM".into()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("PVM"), "{e}");
        assert_eq!(resolve(None, None).unwrap().accel, Accel::Kvm);
        assert_eq!(resolve(Some(Accel::Tcg), None).unwrap().accel, Accel::Tcg);
    }

    #[test]
    fn accel_names_parse_and_bad_names_are_named() {
        assert_eq!("kvm".parse::<Accel>().unwrap(), Accel::Kvm);
        let e = "hvf".parse::<Accel>().unwrap_err().to_string();
        assert!(e.contains("\"hvf\""), "{e}");
    }

    #[test]
    fn unusable_kvm_falls_back_to_tcg_with_a_reason() {
        // `false` stands in for a probe guest that fails.
        let c = choose(None, Some(Command::new("false"))).unwrap();
        if c.accel == Accel::Tcg {
            assert!(c.notice().unwrap().contains("using TCG"));
        }
    }
}
