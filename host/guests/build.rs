//! Builds every guest of `guest/` (its own cargo workspace) for wasm32-wasip2 and writes
//! `$OUT_DIR/guests.rs`: one path constant per guest, `ALL`, and the `foreach_guest!` macro.
//!
//! The guest build is a nested `cargo build --release` with:
//! - its own target directory, `<outer target dir>/guests`: sharing the outer build's target
//!   directory would block on the lock the outer cargo holds;
//! - an environment cleaned of what the outer build sets for this script or for host code
//!   (flags, wrappers, target and profile overrides), but the same toolchain (`RUSTUP_TOOLCHAIN`,
//!   `RUSTC`) and the same jobserver (`CARGO_MAKEFLAGS`), so it adds no jobs beyond `-j`;
//! - `guest/` as working directory, so `guest/.cargo/config.toml` applies.
//!
//! It reruns when anything under `guest/` (but its `target/`) or `wit/` changes, and when any
//! file a guest's `.d` dep-info names changes (e.g. a registry crate after an update).

use std::collections::BTreeMap;
use std::env;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[path = "toolchain.rs"]
mod toolchain;

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(required_env("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(required_env("OUT_DIR"));
    let root = manifest_dir.join("../..");
    let root = root
        .canonicalize()
        .unwrap_or_else(|e| fail(&format!("{}: {e}", root.display())));
    let guest_dir = root.join("guest");
    let wit_dir = root.join("wit");

    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=toolchain.rs");
    track_sources(&guest_dir);
    println!("cargo:rerun-if-changed={}", wit_dir.display());

    check_target_installed(&root);
    let target_dir = guest_target_dir(&out_dir);
    let guests = build(&guest_dir, &target_dir);
    if guests.is_empty() {
        fail(&format!(
            "no guest (bin or cdylib) built in {}",
            guest_dir.display()
        ));
    }
    let mut tracked = Vec::new();
    for path in guests.values() {
        track_dep_info(&path.with_extension("d"), &mut tracked);
    }
    let code = generate(&guests);
    let generated = out_dir.join("guests.rs");
    fs::write(&generated, code)
        .unwrap_or_else(|e| fail(&format!("write {}: {e}", generated.display())));
}

/// Prints `message` and fails the build (cargo shows the script's stderr).
fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1)
}

fn required_env(key: &str) -> OsString {
    env::var_os(key).unwrap_or_else(|| fail(&format!("{key} is not set: run through cargo")))
}

/// Every crate directory and workspace file of `guest/`, but not a `target/` a manual build
/// may have left there (cargo scans directories recursively).
fn track_sources(guest_dir: &Path) {
    let entries = fs::read_dir(guest_dir)
        .unwrap_or_else(|e| fail(&format!("read {}: {e}", guest_dir.display())));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| fail(&format!("read {}: {e}", guest_dir.display())));
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // python/ and js/ are the guests of other languages, built by their own scripts; their
        // tool environments (.venv, node_modules) are large and change without a Rust change.
        if name == "target"
            || name == "python"
            || name == "js"
            || (name.starts_with('.') && name != ".cargo")
        {
            continue;
        }
        println!("cargo:rerun-if-changed={}", entry.path().display());
    }
}

/// Installs the guest target with rustup when the toolchain lacks it (one line says so);
/// fails with the fix when that is not possible.
fn check_target_installed(root: &Path) {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let rustup = toolchain::rustup_command(env::var_os("CARGO_HOME").as_deref());
    let active = env::var("RUSTUP_TOOLCHAIN").ok();
    toolchain::ensure_target(
        &rustc,
        rustup.as_os_str(),
        TARGET,
        active.as_deref(),
        root,
        |line| println!("cargo:warning={line}"),
    )
    .unwrap_or_else(|message| fail(&message));
}

/// `<outer target dir>/guests`, found as the nearest ancestor of `OUT_DIR` holding cargo's
/// `CACHEDIR.TAG`; `$OUT_DIR/guest-target` if there is none (an unusual layout).
fn guest_target_dir(out_dir: &Path) -> PathBuf {
    out_dir
        .ancestors()
        .skip(1)
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        .map_or_else(|| out_dir.join("guest-target"), |dir| dir.join("guests"))
}

/// Whether the outer build's `key` must not reach the guest build.
fn leaks(key: &str) -> bool {
    // Flags, wrappers and linkers for host code; what cargo tells this build script.
    const REMOVE: &[&str] = &[
        "RUSTFLAGS",
        "RUSTDOCFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_LINKER",
        "OUT_DIR",
        "TARGET",
        "HOST",
        "PROFILE",
        "OPT_LEVEL",
        "DEBUG",
        "NUM_JOBS",
    ];
    // Cargo settings that are the user's and not the outer build's.
    const KEEP: &[&str] = &[
        "CARGO_HOME",
        "CARGO_MAKEFLAGS",
        "CARGO_BUILD_JOBS",
        "CARGO_LOG",
    ];
    const KEEP_PREFIXES: &[&str] = &[
        "CARGO_NET_",
        "CARGO_HTTP_",
        "CARGO_REGISTRIES_",
        "CARGO_REGISTRY_",
        "CARGO_TERM_",
    ];
    REMOVE.contains(&key)
        || key.starts_with("__CARGO")
        // CARGO_ENCODED_RUSTFLAGS, CARGO_TARGET_DIR, CARGO_TARGET_<triple>_*, CARGO_BUILD_*,
        // CARGO_PROFILE_*, CARGO_CFG_*, CARGO_FEATURE_*, CARGO_PKG_*, CARGO_MANIFEST_*, ...
        || (key.starts_with("CARGO_")
            && !KEEP.contains(&key)
            && !KEEP_PREFIXES.iter().any(|p| key.starts_with(p)))
}

/// Builds the guest workspace; returns each guest's name and `.wasm` path.
fn build(guest_dir: &Path, target_dir: &Path) -> BTreeMap<String, PathBuf> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(guest_dir)
        .arg("build")
        .arg("--release")
        .arg("--workspace")
        .arg("--target")
        .arg(TARGET)
        .arg("--manifest-path")
        .arg(guest_dir.join("Cargo.toml"))
        .arg("--message-format=json-render-diagnostics");
    for (key, _) in env::vars_os() {
        if key.to_str().is_some_and(leaks) {
            cmd.env_remove(&key);
        }
    }
    cmd.env("CARGO_TARGET_DIR", target_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    eprintln!("running: {cmd:?}");
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| fail(&format!("run the guest build {cmd:?}: {e}")));
    let stdout = child
        .stdout
        .take()
        .unwrap_or_else(|| fail("the guest build has no stdout"));

    let mut guests = BTreeMap::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap_or_else(|e| fail(&format!("read the guest build's output: {e}")));
        if let Some((name, wasm)) = guest_artifact(&line, guest_dir)
            && let Some(other) = guests.insert(name.clone(), wasm.clone())
        {
            fail(&format!(
                "two guests are called {name}: {} and {}",
                other.display(),
                wasm.display()
            ));
        }
    }
    let status = child
        .wait()
        .unwrap_or_else(|e| fail(&format!("wait for the guest build: {e}")));
    if !status.success() {
        fail(&format!(
            "building the guests failed ({status}); see the messages above, or run \
             `cargo build --release` in {}",
            guest_dir.display()
        ));
    }
    guests
}

/// `(name, wasm path)` if `line` announces the component of a bin or cdylib of `guest/`. Names
/// are snake case so that they are identifiers.
fn guest_artifact(line: &str, guest_dir: &Path) -> Option<(String, PathBuf)> {
    let message: serde_json::Value = serde_json::from_str(line).ok()?;
    if message["reason"] != "compiler-artifact" {
        return None;
    }
    let manifest = Path::new(message["manifest_path"].as_str()?);
    let kinds = message["target"]["kind"].as_array()?;
    let is_guest = kinds.iter().any(|k| k == "bin" || k == "cdylib");
    if !is_guest || !manifest.starts_with(guest_dir) {
        return None;
    }
    let name = message["target"]["name"].as_str()?.replace('-', "_");
    let wasm = message["filenames"]
        .as_array()?
        .iter()
        .filter_map(|f| f.as_str())
        .find(|f| f.ends_with(".wasm"))?;
    Some((name, PathBuf::from(wasm)))
}

/// Reruns this script when a file the artifact was built from changes. The `.d` file is
/// makefile syntax: `target: dep dep ...`, with spaces in paths escaped by `\`.
fn track_dep_info(dep_info: &Path, tracked: &mut Vec<String>) {
    let Ok(contents) = fs::read_to_string(dep_info) else {
        // Not fatal: the directory triggers above still cover guest/ and wit/.
        println!(
            "cargo:warning=no dep-info {} to track guest sources",
            dep_info.display()
        );
        return;
    };
    for line in contents.lines() {
        let Some((_, deps)) = line.split_once(": ") else {
            continue;
        };
        let mut parts = deps.split_whitespace();
        while let Some(part) = parts.next() {
            let mut file = part.to_owned();
            while file.ends_with('\\') {
                file.pop();
                file.push(' ');
                file.push_str(parts.next().unwrap_or_default());
            }
            if !tracked.contains(&file) {
                println!("cargo:rerun-if-changed={file}");
                tracked.push(file);
            }
        }
    }
}

fn generate(guests: &BTreeMap<String, PathBuf>) -> String {
    let mut code = String::from("// Generated by resmem-guests' build.rs.\n\n");
    let mut all = String::new();
    let mut each = String::new();
    for (name, wasm) in guests {
        let path = wasm
            .to_str()
            .unwrap_or_else(|| fail(&format!("{} is not UTF-8", wasm.display())));
        let constant = name.to_uppercase();
        let _ = writeln!(code, "/// The `{name}` guest component: `{path}`.");
        let _ = writeln!(code, "pub const {constant}: &str = {path:?};");
        let _ = writeln!(
            code,
            "/// The bytes of the `{name}` guest component, embedded at build time."
        );
        let _ = writeln!(
            code,
            "pub const {constant}_WASM: &[u8] = include_bytes!({path:?});"
        );
        let _ = writeln!(all, "    ({name:?}, {constant}),");
        let _ = writeln!(each, "        $mac!({name});");
    }
    let _ = write!(
        code,
        "
/// Every guest as `(name, path)`, sorted by name.
pub const ALL: &[(&str, &str)] = &[
{all}];

/// Calls `$mac!(name)` for every guest, sorted by name (`name` is an identifier). With a
/// `$mac` expanding to `use self::$name as _;` next to one `fn $name` test per guest, a guest
/// that no test uses is a compile error.
#[macro_export]
macro_rules! foreach_guest {{
    ($mac:ident) => {{
{each}    }};
}}
"
    );
    code
}
