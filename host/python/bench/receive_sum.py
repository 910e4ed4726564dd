"""A Python subscriber receiving 1 MiB samples and summing each with numpy, in place, three
ways in one run: resmem's `Subscriber`, iceoryx2's own Python binding (PyPI `iceoryx2`), and a
plain `multiprocessing.shared_memory` ring whose slot indices travel through pipes.

The publisher is a separate process in every case, lossless (resmem `overflow="block"`,
iceoryx2 without safe overflow, resending what was not delivered, the ring's free-slot pipe), with a
queue of 16; it stamps each sample's first word with its sequence number and the subscriber
checks it (in order, nothing lost). Figures: the subscriber's wall time from the first sample
to the last, per sample, median of alternating rounds, and the ratio resmem / anchor.

    build.sh bench [--samples N] [--size BYTES] [--rounds R]
"""

import argparse
import ctypes
import multiprocessing as mp
import os
import statistics
import time
from multiprocessing import shared_memory

import numpy as np

import resmem

QUEUE = 16


# --- resmem -----------------------------------------------------------------------------------

def resmem_publisher(ns, samples, size, ctl):
    with resmem.Publisher("bench", namespace=ns, overflow="block", chunk_size=size,
                          buffer_size=QUEUE, max_loans=QUEUE + 2) as publisher:
        ctl.send("ready")
        publisher.wait_for_subscribers(1, timeout=60)
        for i in range(samples):
            loan = publisher.loan(size)
            memoryview(loan).cast("Q")[0] = i
            publisher.send(loan)
        ctl.recv()  # the subscriber has everything


def resmem_subscriber(ns, samples, ctl):
    ctl.recv()
    with resmem.Subscriber("bench", namespace=ns, timeout=60) as subscriber:
        total = 0
        start = None
        for i in range(samples):
            sample = subscriber.receive(timeout=30)
            if start is None:
                start = time.perf_counter()
            words = np.frombuffer(sample, dtype=np.uint64)
            assert words[0] == i, (int(words[0]), i)
            total += int(words.sum())
            del words
            sample.release()
        elapsed = time.perf_counter() - start
    ctl.send("done")
    return elapsed, total


# --- iceoryx2 ---------------------------------------------------------------------------------

def iox_service(iox2, name, size):
    node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)
    service = (
        node.service_builder(iox2.ServiceName.new(name))
        .publish_subscribe(iox2.Slice[ctypes.c_uint8])
        .enable_safe_overflow(False)
        .subscriber_max_buffer_size(QUEUE)
        .open_or_create()
    )
    return node, service


def iox_publisher(name, samples, size, ctl):
    import iceoryx2 as iox2
    iox2.set_log_level(iox2.LogLevel.Error)
    ctl.recv()  # the subscriber exists
    node, service = iox_service(iox2, name, size)
    publisher = (
        service.publisher_builder()
        .initial_max_slice_len(size)
        .backpressure_strategy(iox2.BackpressureStrategy.RetryUntilDelivered)
        .create()
    )
    publisher.update_connections()
    ctl.send("ready")
    for i in range(samples):
        # RetryUntilDelivered alone still returns 0 deliveries on a full queue in this
        # binding (0.10); retry here until the subscriber has it, so the run is lossless.
        while True:
            sample = publisher.loan_slice_uninit(size)
            ctypes.c_uint64.from_address(sample.payload_ptr).value = i
            if sample.assume_init().send() == 1:
                break
    ctl.recv()
    publisher.delete()
    del service, node


def iox_subscriber(name, samples, size, ctl):
    import iceoryx2 as iox2
    iox2.set_log_level(iox2.LogLevel.Error)
    node, service = iox_service(iox2, name, size)
    subscriber = service.subscriber_builder().buffer_size(QUEUE).create()
    ctl.send("subscribed")
    ctl.recv()
    total = 0
    start = None
    for i in range(samples):
        # iceoryx2's publish-subscribe has no blocking receive (that takes an event service
        # and a WaitSet): poll, as its examples do.
        while (sample := subscriber.receive()) is None:
            pass
        if start is None:
            start = time.perf_counter()
        words = np.frombuffer(sample.payload().as_memory_view(), dtype=np.uint64)
        assert words[0] == i, (int(words[0]), i)
        total += int(words.sum())
        del words
        sample.delete()
    elapsed = time.perf_counter() - start
    ctl.send("done")
    subscriber.delete()
    del service, node
    return elapsed, total


# --- multiprocessing.shared_memory ------------------------------------------------------------

def shm_publisher(shm_name, samples, size, full, free, ctl):
    shm = shared_memory.SharedMemory(name=shm_name)
    idle = list(range(QUEUE))
    ctl.send("ready")
    for i in range(samples):
        slot = idle.pop() if idle else free.recv()
        words = np.frombuffer(shm.buf, dtype=np.uint64, count=1, offset=slot * size)
        words[0] = i
        del words
        full.send(slot)
    ctl.recv()
    shm.close()


def shm_subscriber(shm, samples, size, full, free, ctl):
    ctl.recv()
    total = 0
    start = None
    for i in range(samples):
        slot = full.recv()
        if start is None:
            start = time.perf_counter()
        words = np.frombuffer(shm.buf, dtype=np.uint64, count=size // 8, offset=slot * size)
        assert words[0] == i, (int(words[0]), i)
        total += int(words.sum())
        del words
        free.send(slot)
    elapsed = time.perf_counter() - start
    ctl.send("done")
    return elapsed, total


# --- the run ----------------------------------------------------------------------------------

def run_one(system, ctx, samples, size, tag):
    ctl, child_ctl = ctx.Pipe()
    if system == "resmem":
        ns = f"rmbench{os.getpid()}_{tag}_"
        proc = ctx.Process(target=resmem_publisher, args=(ns, samples, size, child_ctl))
        proc.start()
        result = resmem_subscriber(ns, samples, ctl)
    elif system == "iceoryx2":
        name = f"rmbench{os.getpid()}_{tag}"
        proc = ctx.Process(target=iox_publisher, args=(name, samples, size, child_ctl))
        proc.start()
        result = iox_subscriber(name, samples, size, ctl)
    else:
        shm = shared_memory.SharedMemory(create=True, size=QUEUE * size)
        full_rx, full_tx = ctx.Pipe(duplex=False)
        free_rx, free_tx = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=shm_publisher,
                           args=(shm.name, samples, size, full_tx, free_rx, child_ctl))
        proc.start()
        try:
            result = shm_subscriber(shm, samples, size, full_rx, free_tx, ctl)
        finally:
            proc.join(60)
            shm.close()
            shm.unlink()
    proc.join(60)
    assert proc.exitcode == 0, f"{system} publisher exited with {proc.exitcode}"
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--size", type=int, default=1 << 20)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    systems = ["resmem", "iceoryx2", "shared_memory"]
    times = {s: [] for s in systems}
    sums = {}
    for r in range(args.rounds):
        # Alternate the order so no system always runs first (cold caches) or last.
        order = systems if r % 2 == 0 else systems[::-1]
        for system in order:
            elapsed, total = run_one(system, ctx, args.samples, args.size, f"{r}{system[:3]}")
            times[system].append(elapsed / (args.samples - 1))
            sums.setdefault(system, total)
            assert sums[system] == total
    mib = args.size / (1 << 20)
    print(f"Python subscriber: receive + numpy sum of {args.samples} samples of {mib:g} MiB, "
          f"median of {args.rounds} alternating rounds")
    print(f"{'system':<16}{'per sample':>14}{'GB/s':>10}{'resmem / it':>14}")
    ours = statistics.median(times["resmem"])
    for system in systems:
        t = statistics.median(times[system])
        print(f"{system:<16}{t * 1e6:>11.1f} us{args.size / t / 1e9:>10.2f}{ours / t:>13.2f}x")


if __name__ == "__main__":
    main()
