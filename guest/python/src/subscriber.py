"""Python guest (componentize-py, world `subscriber` in ../wit): a channel subscriber.

    subscriber <service> [count]

Opens a subscriber on `service` (relative to the guest's namespace; waits up to 5 s for it to
appear), prints `subscribed <service>`, then waits for samples with `wasi:io/poll.poll` on the
subscriber's pollable (`subscribe()`), never by spinning: it prints `waiting` right before
each call of `poll` (a peer that sends only after reading it knows the sample reaches the guest
through that wake-up); each time the pollable is ready it takes every queued sample (`receive`
until none), reads its bytes in pieces of at most 1 MiB, computes their CRC-32 (zlib) and
prints, one line per sample,

    sample <index> len=<bytes> crc32=<8 hex digits> segment=<id> offset=<packed u64>

then releases it. It stops after `count` samples, or (`count` 0 or absent) when the publisher
is gone (`disconnected`), and prints

    end <count|disconnected> samples=<n> bytes=<total> polls=<calls of poll> empty=<n>

`empty` counts wake-ups without a sample or a disconnection: the pollable is level-triggered,
so it stays 0 unless the host woke the guest for its deadline. The pollable is dropped before
the subscriber (its parent). Exit code 0 when done; 1 with `subscriber: <why>` on stderr when
the publisher went away before `count` samples, or on any other failure.
"""

import sys
import zlib

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import channel as ch
from wit_world.imports import poll
from wit_world.imports import types as t

# Bytes copied per host call.
PIECE = 1 << 20
OPEN_TIMEOUT_MS = 5000


def pack(offset):
    """The WIT record as a packed u64 (`offset << 8 | segment`), as native peers print it."""
    return offset.offset << 8 | offset.segment


def describe(error):
    """A WIT error (an `Err` raised by a binding) as text."""
    value = error.value if isinstance(error, Err) else error
    name = type(value).__name__.removeprefix("Error_")
    detail = getattr(value, "value", None)
    return f"{name}({detail})" if detail is not None else name


def disconnected(error):
    return isinstance(error.value, t.Error_Disconnected)


class Short(Exception):
    """The publisher went away before `count` samples arrived."""


def checksum(subscriber, sample):
    """CRC-32 of the sample's bytes, read in pieces."""
    crc, at = 0, 0
    while at < sample.len:
        n = min(PIECE, sample.len - at)
        data = subscriber.read(sample.offset, at, n)
        if len(data) != n:
            raise ValueError(f"asked for {n} bytes at {pack(sample.offset)}+{at}, got {len(data)}")
        crc = zlib.crc32(data, crc)
        at += n
    return crc


def subscribe(service, count):
    samples, total, polls, empty = 0, 0, 0, 0
    end = None
    with ch.Subscriber.open(service, OPEN_TIMEOUT_MS) as subscriber:
        # Inner: the pollable (a child of the subscriber) is dropped first.
        with subscriber.subscribe() as pollable:
            print(f"subscribed {service}", flush=True)
            while end is None:
                print("waiting", flush=True)
                ready = poll.poll([pollable])
                polls += 1
                if ready != [0]:
                    raise ValueError(f"poll of one pollable returned {ready}")
                took = 0
                while end is None:
                    try:
                        sample = subscriber.receive()
                    except Err as e:
                        if not disconnected(e):
                            raise
                        end = "disconnected"
                        took += 1
                        break
                    if sample is None:
                        break
                    took += 1
                    crc = checksum(subscriber, sample)
                    print(
                        f"sample {samples} len={sample.len} crc32={crc:08x} "
                        f"segment={sample.offset.segment} offset={pack(sample.offset)}",
                        flush=True,
                    )
                    subscriber.release(sample.offset)
                    samples += 1
                    total += sample.len
                    if count and samples == count:
                        end = "count"
                if took == 0:
                    empty += 1
    print(f"end {end} samples={samples} bytes={total} polls={polls} empty={empty}", flush=True)
    if end == "disconnected" and count and samples < count:
        raise Short(f"disconnected after {samples} of {count} samples")


def main(args):
    if not 1 <= len(args) <= 2:
        raise ValueError("usage: subscriber <service> [count]")
    try:
        count = int(args[1]) if len(args) > 1 else 0
    except ValueError:
        raise ValueError(f"count {args[1]!r} is not a number") from None
    if count < 0:
        raise ValueError(f"count {count} is negative")
    subscribe(args[0], count)


class Run(exports.Run):
    def run(self) -> None:
        try:
            main(sys.argv[1:])
        except Err as e:
            print(f"subscriber: {describe(e)}", file=sys.stderr)
            raise Err(None)
        except Exception as e:  # every other failure: a message and exit code 1, no trace
            print(f"subscriber: {e}", file=sys.stderr)
            raise Err(None)
