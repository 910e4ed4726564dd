//! Makes sure the toolchain can build for the guests' target, installing the target with
//! rustup when it is missing (rustup only auto-installs when `RUSTUP_AUTO_INSTALL` allows it,
//! and never targets). Shared by the build script and this crate's unit tests.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What `ensure_target` found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetStatus {
    /// The standard library for the target was already there.
    Present,
    /// It was missing and `rustup target add` installed it.
    Installed,
}

/// Whether `rustc` has a standard library for `target`.
pub fn has_target(rustc: &OsStr, target: &str) -> bool {
    Command::new(rustc)
        .args(["--print", "target-libdir", "--target", target])
        .output()
        .is_ok_and(|out| {
            out.status.success() && Path::new(String::from_utf8_lossy(&out.stdout).trim()).is_dir()
        })
}

/// Ensures `rustc` can build for `target`: when it cannot, runs `rustup target add <target>
/// [--toolchain <toolchain>]` in `dir` (so a `rust-toolchain.toml` there resolves as for the
/// build) and checks again. `announce` is called once, before rustup runs. The error is the
/// whole message to show, with the command that fixes it.
pub fn ensure_target(
    rustc: &OsStr,
    rustup: &OsStr,
    target: &str,
    toolchain: Option<&str>,
    dir: &Path,
    announce: impl FnOnce(&str),
) -> Result<TargetStatus, String> {
    if has_target(rustc, target) {
        return Ok(TargetStatus::Present);
    }
    let mut args = vec!["target".to_owned(), "add".to_owned(), target.to_owned()];
    if let Some(toolchain) = toolchain {
        args.extend(["--toolchain".to_owned(), toolchain.to_owned()]);
    }
    let shown = format!("rustup {}", args.join(" "));
    let advice = format!(
        "the Rust target {target} is not installed for this toolchain ({}); the guests need \
         it: run `{shown}`",
        toolchain.unwrap_or("the active one")
    );
    announce(&format!(
        "the Rust target {target} is missing: installing it (`{shown}`)"
    ));
    let output = Command::new(rustup)
        .args(&args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("{advice} (could not run {}: {e})", rustup.to_string_lossy()))?;
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stderr);
        // rustup's first line says why; a backtrace may follow.
        let why = said
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no output");
        return Err(format!("{advice} (`{shown}` failed: {})", why.trim()));
    }
    if has_target(rustc, target) {
        Ok(TargetStatus::Installed)
    } else {
        Err(format!(
            "{advice} (`{shown}` ran, but the target is still missing)"
        ))
    }
}

/// The `rustup` to run: the one in `$CARGO_HOME/bin` (where rustup installs itself and its
/// proxies; rustup's proxies set `CARGO_HOME`), else `rustup` from the PATH.
pub fn rustup_command(cargo_home: Option<&OsStr>) -> PathBuf {
    cargo_home
        .map(|home| Path::new(home).join("bin").join("rustup"))
        .filter(|candidate| candidate.is_file())
        .unwrap_or_else(|| PathBuf::from("rustup"))
}
