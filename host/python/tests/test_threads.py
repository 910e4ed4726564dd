"""One Memory, View, Publisher or Subscriber used from several Python threads at once."""

import threading

import numpy as np

import resmem


def test_threads_allocate_write_and_free_on_one_memory(ns):
    memory = resmem.Memory("mt", namespace=ns, chunk_size=256, chunks=64)
    view = resmem.View("mt", namespace=ns)
    errors = []
    live_offsets = set()
    lock = threading.Lock()

    def worker(tag):
        try:
            for round_ in range(200):
                chunks = [memory.allocate(256) for _ in range(8)]
                with lock:
                    for c in chunks:
                        assert c.offset not in live_offsets, "one offset handed out twice"
                        live_offsets.add(c.offset)
                for i, c in enumerate(chunks):
                    np.frombuffer(c, dtype=np.uint8)[:] = (tag * 31 + round_ + i) % 256
                for i, c in enumerate(chunks):
                    with view.register(c.offset, 256) as reg:
                        seen = np.frombuffer(reg, dtype=np.uint8)
                        assert (seen == (tag * 31 + round_ + i) % 256).all()
                        del seen
                with lock:
                    for c in chunks:
                        live_offsets.remove(c.offset)
                for c in chunks:
                    c.free()
        except Exception as e:  # reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert live_offsets == set()
    memory.close()


def test_one_publisher_thread_two_subscriber_threads(ns):
    publisher = resmem.Publisher("fan", namespace=ns, overflow="block", chunk_size=4096)
    subscribers = [resmem.Subscriber("fan", namespace=ns) for _ in range(2)]
    totals = [None, None]
    count = 300

    def consume(k):
        values = []
        for sample in subscribers[k]:
            with sample:
                array = np.frombuffer(sample, dtype=np.uint32)
                assert (array == array[0]).all()
                values.append(int(array[0]))
                del array
        totals[k] = values

    consumers = [threading.Thread(target=consume, args=(k,)) for k in range(2)]
    for c in consumers:
        c.start()
    for i in range(count):
        loan = publisher.loan(4096)
        np.frombuffer(loan, dtype=np.uint32)[:] = i
        assert publisher.send(loan) == 2
    publisher.close()
    for c in consumers:
        c.join()
    assert totals == [list(range(count)), list(range(count))]
    for s in subscribers:
        s.close()
