"""Buffers keep what they point at mapped; giving bytes back under a live buffer is refused."""

import gc

import numpy as np
import pytest

import resmem


def test_a_sample_outlives_its_closed_subscriber(ns):
    publisher = resmem.Publisher("keep", namespace=ns)
    subscriber = resmem.Subscriber("keep", namespace=ns)
    publisher.send_copy(bytes(range(256)) * 16)
    sample = subscriber.receive(timeout=5)
    array = np.frombuffer(sample, dtype=np.uint8)
    subscriber.close()
    publisher.close()
    gc.collect()
    # The sample holds the native subscriber, which holds the publisher's segment mapped.
    assert (array == np.tile(np.arange(256, dtype=np.uint8), 16)).all()
    with pytest.raises(BufferError):
        sample.release()
    del array
    sample.release()
    sample.release()  # twice is a no-op
    assert len(sample) == 0
    with pytest.raises(resmem.Closed):
        sample.offset


def test_a_chunk_keeps_its_memory_when_the_memory_object_goes(ns):
    memory = resmem.Memory("orphan", namespace=ns)
    chunk = memory.allocate(1024)
    array = np.frombuffer(chunk, dtype=np.uint16)
    del memory
    gc.collect()
    array[:] = 7
    assert resmem.exists("orphan", namespace=ns)
    reg = resmem.View("orphan", namespace=ns).register(chunk.offset, 1024)
    assert (np.frombuffer(reg, dtype=np.uint16) == 7).all()
    reg.unregister()
    del array
    chunk.free()
    del chunk
    gc.collect()
    # The last chunk took the memory with it.
    assert not resmem.exists("orphan", namespace=ns)


def test_give_back_refused_for_every_buffer_kind(ns):
    memory = resmem.Memory("kinds", namespace=ns)
    chunk = memory.allocate(64)
    reg = resmem.View("kinds", namespace=ns).register(chunk.offset, 64)
    publisher = resmem.Publisher("kinds-svc", namespace=ns)
    subscriber = resmem.Subscriber("kinds-svc", namespace=ns)
    loan = publisher.loan(32)
    publisher.send_copy(b"s" * 32)
    sample = subscriber.receive(timeout=5)
    held = [memoryview(x) for x in (chunk, reg, loan, sample)]
    # Two buffers of one object: both must go before the give-back.
    second = np.frombuffer(sample, dtype=np.uint8)
    for give_back in (chunk.free, reg.unregister, lambda: publisher.send(loan), sample.release,
                      memory.close):
        with pytest.raises(BufferError):
            give_back()
    for h in held:
        h.release()
    with pytest.raises(BufferError):
        sample.release()
    del second
    sample.release()
    assert publisher.send(loan) == 1
    reg.unregister()
    chunk.free()
    memory.close()
    with subscriber.receive(timeout=5) as again:
        assert len(again) == 32
    publisher.close()
    subscriber.close()


def test_a_loan_buffer_is_exactly_the_size_asked(ns):
    with resmem.Publisher("size", namespace=ns) as publisher:
        with resmem.Subscriber("size", namespace=ns) as subscriber:
            for size in (0, 1, 7, 4096, 100_000):
                loan = publisher.loan(size)
                assert len(loan) == size == memoryview(loan).nbytes
                memoryview(loan)[:] = bytes([size % 251]) * size
                publisher.send(loan)
                with subscriber.receive(timeout=5) as sample:
                    assert bytes(sample) == bytes([size % 251]) * size
