//! The filter plugin: native buffers and a producer guest's chunks, XORed by the plugin.

use super::*;

/// The filter plugin XORs every byte with this (guest/filter).
const FILTER_KEY: u8 = 0x5A;

fn wit_offset(offset: PointerOffset) -> WitOffset {
    WitOffset {
        segment: offset.segment_id().value(),
        offset: offset.offset(),
    }
}

fn buffer(memory: &str, spec: &ChunkSpec) -> Buffer {
    Buffer {
        memory: memory.to_owned(),
        offset: wit_offset(spec.offset),
        len: spec.len as u64,
    }
}

/// Hands every chunk to the plugin and checks each output natively: same length, in the
/// plugin's memory `filter-out`, every byte `input ^ 0x5A`.
fn filter_and_check(
    plugin: &mut resmem_host::Plugin,
    scope: &Scope,
    memory: &str,
    specs: &[ChunkSpec],
) {
    let mut output_view: Option<View> = None;
    for spec in specs {
        let out = plugin
            .process(&buffer(memory, spec))
            .expect("the plugin does not trap")
            .unwrap_or_else(|e| panic!("the plugin refused {spec}: {e}"))
            .expect("an output buffer");
        assert_eq!(
            (out.memory.as_str(), out.len),
            ("filter-out", spec.len as u64)
        );
        let view = output_view.get_or_insert_with(|| {
            View::builder("filter-out")
                .config(&scope.config())
                .open(AccessMode::Read)
                .expect("the plugin's output memory")
        });
        let offset = PointerOffset::new(
            resmem::SegmentId::new(out.offset.segment),
            out.offset.offset,
        );
        let bytes = copy_from_view(view, offset, spec.len).unwrap();
        let bad = bytes
            .iter()
            .enumerate()
            .position(|(i, &b)| b != Pattern::Guest.byte(spec.seed, i as u64) ^ FILTER_KEY);
        assert_eq!(bad, None, "output of {spec} differs at this byte");
    }
}

/// A native owner's chunks (several segments) through the filter plugin; the plugin's output
/// memory lives exactly as long as the plugin.
#[test]
fn filter_plugin_xors_native_buffers_and_its_memory_dies_with_it() {
    let scope = Scope::new("gfilt");
    let host = host(&scope);
    let filter = load(&host, resmem_guests::FILTER_WASM);
    let memory = Memory::builder("input")
        .config(&scope.config())
        .max_chunk_layout_hint(layout(1000))
        .create()
        .unwrap();
    let specs: Vec<ChunkSpec> = [1000, 70_000, MIB + 3, 5]
        .iter()
        .enumerate()
        .map(|(i, &len)| alloc_guest_filled(&memory, len, 40 + i as u64))
        .collect();
    assert!(segments_of(&specs).len() >= 3);

    let mut plugin = host
        .plugin(&filter, WasiCtxBuilder::new().inherit_stderr())
        .expect("instantiate the plugin");
    filter_and_check(&mut plugin, &scope, "input", &specs);
    assert_eq!(plugin.state().usage().memories, 1);
    assert_eq!(plugin.state().usage().chunks, 1, "the last output only");
    assert!(plugin.state().shm_bytes() > 0);
    assert_eq!(
        resmem::list(&scope.config()).unwrap(),
        ["filter-out", "input"]
    );

    // An empty buffer gives no output (and frees the previous one); a missing memory is the
    // plugin's refusal, not a trap, and the plugin keeps working afterwards.
    let empty = ChunkSpec::new(specs[0].offset, 0, 0);
    let none = plugin.process(&buffer("input", &empty)).unwrap();
    assert!(matches!(none, Ok(None)), "{}", none.is_ok());
    assert_eq!(plugin.state().usage().chunks, 0);
    let refused = plugin.process(&buffer("missing", &specs[0])).unwrap();
    let message = refused.expect_err("no memory called missing");
    assert!(
        message.contains("open input memory \"missing\""),
        "{message}"
    );
    filter_and_check(&mut plugin, &scope, "input", &specs[..2]);

    drop(plugin);
    assert_eq!(resmem::list(&scope.config()).unwrap(), ["input"]);
    drop(memory);
    assert_empty(&scope);
}

/// A guest-to-guest pipeline in one host: the producer guest owns the input, the filter plugin
/// transforms it, this process checks the result.
#[test]
fn filter_plugin_xors_a_producer_guests_chunks() {
    let scope = Scope::new("gpipe");
    let host = host(&scope);
    let producer = load(&host, resmem_guests::PRODUCER_WASM);
    let filter = load(&host, resmem_guests::FILTER_WASM);
    let mut guest = Running::start(&host, &producer, &["producer", "frames", "5", "5000"]);
    let chunks = parse_chunks(&guest.until_ready());
    assert_doubling(&chunks, 5, 5000);
    let specs: Vec<ChunkSpec> = chunks.iter().map(GuestChunk::spec).collect();

    let mut plugin = host
        .plugin(&filter, WasiCtxBuilder::new().inherit_stderr())
        .expect("instantiate the plugin");
    filter_and_check(&mut plugin, &scope, "frames", &specs);
    drop(plugin);
    assert_eq!(resmem::list(&scope.config()).unwrap(), ["frames"]);

    guest.release();
    let end = guest.finish();
    assert_eq!(end.outcome, RunOutcome::Exited(0), "{end:?}");
    assert_empty(&scope);
}
