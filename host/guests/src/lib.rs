//! The WebAssembly guests of `guest/`, built by this crate's build script with
//! `cargo build --release --target wasm32-wasip2` (the guest workspace is separate from the host
//! workspace and has its own target directory, `<target-dir>/guests`).
//!
//! For every guest there is a constant with the absolute path of its component, named after
//! the guest in upper case (`PRODUCER` for `guest/producer`), [`all`] lists them, and
//! [`foreach_guest!`] calls a macro once per guest name, so a test suite that uses it fails to
//! compile when a guest is added that it does not handle.
//!
//! ```
//! let wasm = std::fs::read(resmem_guests::PRODUCER).unwrap();
//! assert_eq!(&wasm[..4], b"\0asm");
//! ```

include!(concat!(env!("OUT_DIR"), "/guests.rs"));

/// Every guest as `(name, absolute path of its .wasm component)`, sorted by name.
pub fn all() -> &'static [(&'static str, &'static str)] {
    ALL
}

/// The build script's target check, compiled here too so that it is unit-tested.
#[cfg(test)]
#[path = "../toolchain.rs"]
#[allow(dead_code)]
mod toolchain;

#[cfg(test)]
mod tests {
    #[test]
    fn every_guest_is_a_built_component() {
        assert!(!super::all().is_empty());
        for (name, path) in super::all() {
            let wasm = std::fs::read(path).unwrap_or_else(|e| panic!("{name}: {path}: {e}"));
            // Magic, then the component-model layer (a core module would have version 1).
            assert_eq!(&wasm[..4], b"\0asm", "{name}");
            assert_eq!(
                &wasm[4..8],
                &[0x0d, 0x00, 0x01, 0x00],
                "{name} is not a component"
            );
        }
    }

    #[test]
    fn foreach_guest_names_every_guest() {
        let mut names = Vec::new();
        macro_rules! push {
            ($name:ident) => {
                names.push(stringify!($name))
            };
        }
        foreach_guest!(push);
        let all: Vec<_> = super::all().iter().map(|(n, _)| *n).collect();
        assert_eq!(names, all);
    }

    mod toolchain {
        use std::ffi::OsStr;
        use std::path::Path;

        use crate::toolchain::{TargetStatus, ensure_target, has_target};

        fn host_triple() -> String {
            let out = std::process::Command::new("rustc")
                .arg("-vV")
                .output()
                .unwrap();
            let text = String::from_utf8(out.stdout).unwrap();
            let host = text.lines().find_map(|l| l.strip_prefix("host: "));
            host.expect("rustc -vV names the host").to_owned()
        }

        #[test]
        fn an_installed_target_needs_no_rustup() {
            let host = host_triple();
            assert!(has_target(OsStr::new("rustc"), &host));
            let mut announced = false;
            // A rustup that does not exist: it must not be needed.
            let status = ensure_target(
                OsStr::new("rustc"),
                OsStr::new("/nonexistent/rustup"),
                &host,
                None,
                Path::new("."),
                |_| announced = true,
            );
            assert_eq!(status, Ok(TargetStatus::Present));
            assert!(!announced);
        }

        #[test]
        fn a_missing_target_is_installed_or_the_fix_is_named() {
            let target = "wasm32-nosuch-resmem";
            assert!(!has_target(OsStr::new("rustc"), target));
            let mut lines = Vec::new();
            // The real rustup refuses an unknown target: the error carries the fix and what
            // rustup said.
            let error = ensure_target(
                OsStr::new("rustc"),
                OsStr::new("rustup"),
                target,
                Some("1.95.0"),
                Path::new("."),
                |line| lines.push(line.to_owned()),
            )
            .unwrap_err();
            assert_eq!(lines.len(), 1, "{lines:?}");
            assert!(lines[0].contains("installing it"), "{lines:?}");
            assert!(
                error.contains("run `rustup target add wasm32-nosuch-resmem --toolchain 1.95.0`"),
                "{error}"
            );
            assert!(error.contains("failed:"), "{error}");
        }

        #[test]
        fn without_rustup_the_fix_is_named() {
            let error = ensure_target(
                OsStr::new("rustc"),
                OsStr::new("/nonexistent/rustup"),
                "wasm32-nosuch-resmem",
                None,
                Path::new("."),
                |_| {},
            )
            .unwrap_err();
            assert!(
                error.contains("rustup target add wasm32-nosuch-resmem`"),
                "{error}"
            );
            assert!(
                error.contains("could not run /nonexistent/rustup"),
                "{error}"
            );
        }
    }
}
