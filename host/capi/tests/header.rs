//! `include/resmem.h` is what cbindgen makes of the crate now. `RESMEM_BLESS=1` rewrites it
//! instead of comparing.

use std::path::Path;

/// The header cbindgen makes of the crate as it is now.
fn generate() -> String {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config =
        cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml parses");
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(crate_dir.join("src/lib.rs"))
        .generate()
        .expect("cbindgen generates the header");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    String::from_utf8(generated).expect("the header is UTF-8")
}

#[test]
fn header_is_current() {
    let generated = generate();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("include/resmem.h");
    if std::env::var_os("RESMEM_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &generated).expect("write include/resmem.h");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/resmem.h is stale (the Rust API or its doc comments changed): run \
         `RESMEM_BLESS=1 cargo test -p resmem-c --test header` and commit the header"
    );
}

/// Every entry point the contract names is declared, with its documentation.
#[test]
fn header_declares_and_documents_the_contract() {
    let header = generate();
    for function in [
        "resmem_memory_create",
        "resmem_memory_allocate",
        "resmem_memory_deallocate",
        "resmem_memory_close",
        "resmem_view_open",
        "resmem_view_register",
        "resmem_view_unregister",
        "resmem_view_close",
        "resmem_publisher_create",
        "resmem_publisher_loan",
        "resmem_loan_data",
        "resmem_loan_len",
        "resmem_loan_offset",
        "resmem_publisher_send",
        "resmem_loan_discard",
        "resmem_publisher_send_copy",
        "resmem_publisher_wait_for_subscribers",
        "resmem_publisher_destroy",
        "resmem_subscriber_create",
        "resmem_subscriber_receive",
        "resmem_sample_data",
        "resmem_sample_len",
        "resmem_sample_offset",
        "resmem_subscriber_release",
        "resmem_subscriber_destroy",
        "resmem_list",
        "resmem_list_free",
        "resmem_exists",
        "resmem_remove",
        "resmem_version",
        "resmem_last_error_message",
        "resmem_status_name",
    ] {
        // The declaration: a line outside any comment that names the function.
        let lines: Vec<&str> = header.lines().collect();
        let at = lines
            .iter()
            .position(|line| {
                !line.trim_start().starts_with('*')
                    && !line.starts_with("/*")
                    && (line.contains(&format!(" {function}("))
                        || line.contains(&format!("*{function}(")))
            })
            .unwrap_or_else(|| panic!("{function} is not declared"));
        assert!(
            at > 0 && lines[at - 1].trim() == "*/",
            "{function} has no doc comment right before it"
        );
    }
    for item in [
        "typedef struct resmem_memory resmem_memory;",
        "typedef struct resmem_view resmem_view;",
        "typedef struct resmem_publisher resmem_publisher;",
        "typedef struct resmem_subscriber resmem_subscriber;",
        "typedef struct resmem_loan resmem_loan;",
        "typedef struct resmem_sample resmem_sample;",
        "RESMEM_OK = 0",
        "#define RESMEM_H",
    ] {
        assert!(header.contains(item), "the header lacks {item:?}");
    }
}
