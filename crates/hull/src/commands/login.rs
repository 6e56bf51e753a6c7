//! `hull login`: stores registry credentials in the docker config file that pulls read.
//! They are checked by the registry at the next pull, not here.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use super::Ctx;
use crate::error::{Error, Result};

const EXAMPLES: &str = "\
Examples:
  hull login -u alice quay.io
  echo \"$TOKEN\" | hull login -u alice --password-stdin 127.0.0.1:5000";

/// Store credentials for a registry.
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct LoginArgs {
    /// User name (asked on the terminal if missing).
    #[arg(short, long)]
    pub username: Option<String>,
    /// Password (prefer --password-stdin: this one is visible to other users).
    #[arg(short, long)]
    pub password: Option<String>,
    /// Read the password from stdin.
    #[arg(long)]
    pub password_stdin: bool,
    /// Credentials file (default: $REGISTRY_AUTH_FILE, else ~/.docker/config.json).
    #[arg(long)]
    pub authfile: Option<PathBuf>,
    /// The registry (host[:port]); default docker.io.
    #[arg(default_value = "docker.io")]
    pub registry: String,
}

pub fn login(_ctx: &Ctx, a: LoginArgs) -> Result<i32> {
    if a.password_stdin && a.password.is_some() {
        return Err(Error::Invalid(
            "--password and --password-stdin exclude each other".into(),
        ));
    }
    let auth_file = hull_image::auth_file_path(a.authfile.as_deref()).ok_or_else(|| {
        Error::Invalid("no credentials file: set HOME, REGISTRY_AUTH_FILE or --authfile".into())
    })?;
    let user = match a.username {
        Some(u) => u,
        None if std::io::stdin().is_terminal() && !a.password_stdin => prompt("Username: ", true)?,
        None => return Err(Error::Invalid("a user name is needed: -u USER".into())),
    };
    let password = match (a.password, a.password_stdin) {
        (Some(p), _) => p,
        (None, true) => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(Error::io("reading the password from stdin"))?;
            line.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) if std::io::stdin().is_terminal() => prompt("Password: ", false)?,
        (None, false) => {
            return Err(Error::Invalid(
                "a password is needed: --password-stdin (or a terminal to ask on)".into(),
            ))
        }
    };
    if password.is_empty() {
        return Err(Error::Invalid("the password is empty".into()));
    }
    hull_image::login(&auth_file, &a.registry, &user, &password)?;
    eprintln!(
        "Credentials for {} saved in {}",
        a.registry,
        auth_file.display()
    );
    println!("Login Succeeded");
    Ok(0)
}

/// Asks on the terminal; without echo for a password.
fn prompt(question: &str, echo: bool) -> Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let stdin = std::io::stdin();
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let saved = tcgetattr(&stdin).ok();
    if let (false, Some(t)) = (echo, &saved) {
        let mut quiet = t.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &quiet);
    }
    let mut line = String::new();
    let r = stdin.lock().read_line(&mut line);
    if let (false, Some(t)) = (echo, &saved) {
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, t);
        eprintln!();
    }
    r.map_err(Error::io("reading the terminal"))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}
