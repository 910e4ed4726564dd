//! libFuzzer target: a hostile peer's writes into a live channel's control object (service
//! header, slot states, queue indices and entries), interleaved with publisher and
//! subscriber calls and `layout::validate` on raw bytes. The driver panics on any outcome
//! that is not a typed error or a sample that holds up, on a double free or a leaked chunk,
//! and on a model mismatch in a run without hostile writes; libFuzzer reports panics and
//! memory errors.

#![no_main]

#[path = "../drivers/channel_parse.rs"]
mod channel_parse;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    channel_parse::run(data);
});
