"""Python guest (componentize-py, world `command` in ../wit): statistics over shared chunks.

    stats <input-memory> <output-memory> <offset>:<len>...   (offset: packed u64)
    stats bench [scale] [samples]

`stats` opens a read-only view of `input-memory` (a memory someone else owns, e.g. a native
producer), reads every chunk in pieces of at most 1 MiB and computes its CRC-32, byte sum,
minimum and maximum. It creates `output-memory` and publishes, per input chunk, one chunk of
its own: a 32-byte header followed by the input bytes inverted (255 - b):

    0  magic   b"RMPYSTAT"
    8  len     u64 LE   bytes of the input chunk (and of the payload after the header)
    16 crc32   u32 LE   CRC-32 (zlib) of the input bytes
    20 min     u8
    21 max     u8
    22 zero    2 bytes
    24 sum     u64 LE   sum of the input bytes

For each chunk it prints `chunk <packed output offset> <output len> crc32=<hex> sum=<n>
min=<n> max=<n>`, then `ready`, and keeps the output memory alive until a line (or end of
file) arrives on stdin; then the memory is dropped (and removed) and it exits 0. Any failure
is printed to stderr with exit code 1.

`bench` times, from inside the guest, what a Python guest pays per operation across the
component boundary, in the format of the Rust bench guest: `bench <name> <median ns per op>`
lines, then `done`.
"""

import struct
import sys
import time
import zlib

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import resizable_memory as rm
from wit_world.imports import types as t

MAGIC = b"RMPYSTAT"
HEADER = struct.Struct("<8sQIBB2xQ")
assert HEADER.size == 32
# Bytes copied per host call.
PIECE = 1 << 20
OPEN_TIMEOUT_MS = 5000
INVERT = bytes(255 - b for b in range(256))


def unpack(packed):
    """A packed u64 (`offset << 8 | segment`) as the WIT record."""
    return t.PointerOffset(segment=packed & 0xFF, offset=packed >> 8)


def pack(offset):
    return offset.offset << 8 | offset.segment


def describe(error):
    """A WIT error (an `Err` raised by a binding) as text."""
    value = error.value if isinstance(error, Err) else error
    name = type(value).__name__.removeprefix("Error_")
    detail = getattr(value, "value", None)
    return f"{name}({detail})" if detail is not None else name


def parse_chunk(arg):
    try:
        offset, length = arg.split(":")
        return int(offset), int(length)
    except ValueError:
        raise ValueError(f"{arg!r} is not <packed offset>:<len>") from None


def stats(input_name, output_name, specs):
    view = rm.View.open(input_name, t.AccessMode.READ, OPEN_TIMEOUT_MS)
    total = sum(length for _, length in specs)
    hint = max(length for _, length in specs) + HEADER.size
    output = rm.Memory.create(
        output_name,
        rm.MemoryConfig(
            max_chunk_layout_hint=t.Layout(size=hint, align=8),
            max_number_of_chunks_hint=len(specs),
            allocation_strategy=t.AllocationStrategy.POWER_OF_TWO,
        ),
    )
    published = []
    for packed, length in specs:
        source = unpack(packed)
        view.register(source)
        target = output.allocate(t.Layout(size=HEADER.size + length, align=8))
        crc, total_sum, low, high = 0, 0, 255, 0
        at = 0
        while at < length:
            n = min(PIECE, length - at)
            data = view.read(source, at, n)
            if len(data) != n:
                raise ValueError(f"asked for {n} bytes at {packed}+{at}, got {len(data)}")
            crc = zlib.crc32(data, crc)
            total_sum += sum(data)
            low, high = min(low, min(data)), max(high, max(data))
            output.write(target, HEADER.size + at, data.translate(INVERT))
            at += n
        view.unregister(source)
        if length == 0:
            low = 0
        output.write(target, 0, HEADER.pack(MAGIC, length, crc, low, high, total_sum))
        published.append(target)
        print(
            f"chunk {pack(target)} {HEADER.size + length} crc32={crc:08x} sum={total_sum} "
            f"min={low} max={high}"
        )
    print(f"published {len(specs)} chunks, {total} bytes in {output_name!r}")
    print("ready", flush=True)
    sys.stdin.readline()
    for target in published:
        output.deallocate(target)


def median(values):
    values = sorted(values)
    return values[len(values) // 2]


def measure(name, samples, iters, op):
    op(1)  # warm-up
    per_op = []
    for _ in range(samples):
        start = time.perf_counter_ns()
        op(iters)
        per_op.append((time.perf_counter_ns() - start) / iters)
    print(f"bench {name} {median(per_op):.1f}", flush=True)


def bench(scale, samples):
    iters = lambda base: max(1, int(base * scale))  # noqa: E731
    config = rm.MemoryConfig(
        max_chunk_layout_hint=t.Layout(size=1 << 20, align=8),
        max_number_of_chunks_hint=4,
        allocation_strategy=t.AllocationStrategy.POWER_OF_TWO,
    )
    pairs = rm.Memory.create("bench-pairs", config)
    small = t.Layout(size=64, align=8)

    def pair(n):
        for _ in range(n):
            pairs.deallocate(pairs.allocate(small))

    measure("pair-64", samples, iters(2000), pair)

    def pair_batch(n):
        # n is a multiple of 64: n chunks in batches of 64, ns per chunk.
        for _ in range(n // 64):
            pairs.deallocate_many(pairs.allocate_many(small, 64))

    measure("pair-64-batch", samples, max(1, iters(2000) // 64) * 64, pair_batch)
    io = rm.Memory.create("bench-io", config)
    chunk = io.allocate(t.Layout(size=1 << 20, align=8))
    for size, base in ((64, 4000), (4096, 2000), (1 << 20, 20)):
        data = bytes(range(256)) * (size // 256) if size >= 256 else bytes(range(size))

        def write(n, data=data):
            for _ in range(n):
                io.write(chunk, 0, data)

        def read(n, size=size):
            for _ in range(n):
                io.read(chunk, 0, size)

        measure(f"write-{size}", samples, iters(base), write)
        measure(f"read-{size}", samples, iters(base), read)
    io.deallocate(chunk)
    print("done", flush=True)


def main(args):
    if args[:1] == ["bench"]:
        scale = float(args[1]) if len(args) > 1 else 1.0
        samples = int(args[2]) if len(args) > 2 else 15
        if scale <= 0 or samples <= 0:
            raise ValueError("usage: stats bench [scale > 0] [samples > 0]")
        bench(scale, samples)
        return
    if len(args) < 3:
        raise ValueError("usage: stats <input-memory> <output-memory> <offset>:<len>...")
    stats(args[0], args[1], [parse_chunk(a) for a in args[2:]])


class Run(exports.Run):
    def run(self) -> None:
        try:
            main(sys.argv[1:])
        except Err as e:
            print(f"stats: {describe(e)}", file=sys.stderr)
            raise Err(None)
        except Exception as e:  # every other failure: a message and exit code 1, no trace
            print(f"stats: {e}", file=sys.stderr)
            raise Err(None)
