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
}
