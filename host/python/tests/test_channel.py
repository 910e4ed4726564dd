"""Publishers and subscribers: samples are buffers of exactly their payload, in place."""

import threading
import time

import numpy as np
import pytest

import resmem


def test_loan_send_receive_in_place(ns):
    publisher = resmem.Publisher("cam", namespace=ns, chunk_size=1 << 20)
    subscriber = resmem.Subscriber("cam", namespace=ns)
    loan = publisher.loan(1 << 20)
    np.frombuffer(loan, dtype=np.uint32)[:] = np.arange(1 << 18, dtype=np.uint32)
    assert publisher.send(loan) == 1
    with pytest.raises(resmem.Closed):
        publisher.send(loan)
    with subscriber.receive(timeout=5) as sample:
        assert len(sample) == 1 << 20
        values = np.frombuffer(sample, dtype=np.uint32)
        assert int(values.sum(dtype=np.uint64)) == sum(range(1 << 18))
        assert memoryview(sample).readonly
        del values
    assert publisher.send_copy(b"hello") == 1
    sample = subscriber.receive(timeout=5)
    assert bytes(sample) == b"hello"
    sample.release()
    assert subscriber.receive(timeout=0.05) is None
    del publisher
    with pytest.raises(resmem.PublisherGone):
        subscriber.receive(timeout=1)
    del subscriber


def test_sample_release_refused_while_exported(ns):
    publisher = resmem.Publisher("hold", namespace=ns)
    subscriber = resmem.Subscriber("hold", namespace=ns)
    publisher.send_copy(b"x" * 100)
    sample = subscriber.receive(timeout=5)
    view = memoryview(sample)
    with pytest.raises(BufferError):
        sample.release()
    loan = publisher.loan(10)
    held = memoryview(loan)
    with pytest.raises(BufferError):
        publisher.send(loan)
    held.release()
    assert publisher.send(loan) == 1
    assert bytes(view[:3]) == b"xxx"
    view.release()
    sample.release()
    with pytest.raises(BufferError):
        memoryview(sample)
    second = subscriber.receive(timeout=5)
    assert len(second) == 10
    second.release()
    del publisher, subscriber


def test_iteration_ends_when_the_publisher_goes(ns):
    # Overflow "block": the producer waits for the consumer instead of dropping, so all 200
    # samples (far more than the 16-deep queue) arrive, in order, and iteration stops once the
    # publisher is closed and its queue drained.
    publisher = resmem.Publisher("iter", namespace=ns, overflow="block")
    subscriber = resmem.Subscriber("iter", namespace=ns)
    delivered = []

    def produce():
        for i in range(200):
            delivered.append(publisher.send_copy(i.to_bytes(4, "little")))
        publisher.close()

    thread = threading.Thread(target=produce)
    thread.start()
    got = []
    for sample in subscriber:
        with sample:
            got.append(int.from_bytes(bytes(sample), "little"))
    thread.join()
    assert got == list(range(200))
    assert delivered == [1] * 200
    assert publisher.closed
    with pytest.raises(resmem.Closed):
        publisher.send_copy(b"late")
    with pytest.raises(resmem.PublisherGone):
        subscriber.receive(timeout=0)
    subscriber.close()
    with pytest.raises(resmem.Closed):
        subscriber.receive(timeout=0)


def test_receive_releases_the_gil(ns):
    publisher = resmem.Publisher("gil", namespace=ns)
    subscriber = resmem.Subscriber("gil", namespace=ns)
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(1)
            time.sleep(0.005)

    thread = threading.Thread(target=ticker)
    thread.start()
    assert subscriber.receive(timeout=0.3) is None
    stop.set()
    thread.join()
    # The ticker ran while receive waited: ~60 ticks in 0.3 s, far more than 10.
    assert len(ticks) > 10
    del publisher, subscriber


def test_channel_errors_are_typed(ns):
    with pytest.raises(resmem.DoesNotExist):
        resmem.Subscriber("none", namespace=ns)
    publisher = resmem.Publisher("one", namespace=ns, max_subscribers=1)
    with pytest.raises(resmem.AlreadyExists):
        resmem.Publisher("one", namespace=ns)
    subscriber = resmem.Subscriber("one", namespace=ns)
    with pytest.raises(resmem.LimitReached):
        resmem.Subscriber("one", namespace=ns)
    with pytest.raises(resmem.Error):
        resmem.Publisher("two", namespace=ns, overflow="sometimes")
    other = resmem.Publisher("other", namespace=ns)
    with pytest.raises(resmem.Error):
        other.send(publisher.loan(8))
    del publisher, subscriber, other
