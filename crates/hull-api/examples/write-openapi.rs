//! Writes the OpenAPI document to `api/hull-vm.openapi.json` at the repository's root (or to
//! the path given as the only argument):
//!
//! ```text
//! cargo run -p hull-api --example write-openapi
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let target = match std::env::args_os().nth(1) {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(hull_api::OPENAPI_FILE),
    };
    let written = hull_api::openapi_json()
        .map_err(|err| err.to_string())
        .and_then(|json| std::fs::write(&target, json).map_err(|err| err.to_string()));
    match written {
        Ok(()) => {
            eprintln!("wrote {}", target.display());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("cannot write {}: {err}", target.display());
            ExitCode::FAILURE
        }
    }
}
