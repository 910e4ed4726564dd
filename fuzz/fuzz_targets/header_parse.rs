//! libFuzzer target: a hostile peer's writes into a live memory's management object and data
//! segments (and replaced segment objects), followed by views opening the memory and
//! registering offsets. The driver panics on any outcome that is not a typed error or a
//! translation inside a mapped payload; libFuzzer reports panics and memory errors.

#![no_main]

#[path = "../drivers/header_parse.rs"]
mod header_parse;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    header_parse::run(data);
});
