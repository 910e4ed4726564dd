"""Every exception kind, raised by the situation it names (never a bare RuntimeError)."""

import os
import subprocess
import sys
import textwrap

import pytest

import resmem


def _spawn_owner_and_die(ns, name):
    """A separate Python process creates memory `name` and dies without closing it."""
    code = textwrap.dedent(f"""
        import os, resmem
        memory = resmem.Memory({name!r}, namespace={ns!r})
        memory.allocate(64)
        os._exit(0)
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_every_kind_is_an_error_subclass():
    kinds = [
        resmem.DoesNotExist, resmem.AlreadyExists, resmem.InvalidName, resmem.InvalidLayout,
        resmem.InvalidOffset, resmem.OutOfMemory, resmem.PermissionDenied, resmem.Timeout,
        resmem.OwnerDead, resmem.Corrupted, resmem.LimitReached, resmem.PublisherGone,
        resmem.Closed,
    ]
    for kind in kinds:
        assert issubclass(kind, resmem.Error) and kind is not resmem.Error
        assert not issubclass(kind, RuntimeError)
    assert len(set(kinds)) == len(kinds)


def test_names_and_layouts(ns):
    for bad in ("", "a/b", "..", "x" * 300, "nul\0"):
        with pytest.raises(resmem.InvalidName):
            resmem.Memory(bad, namespace=ns)
        with pytest.raises(resmem.InvalidName):
            resmem.Publisher(bad, namespace=ns)
    with pytest.raises(resmem.InvalidName):
        resmem.exists("a/b", namespace=ns)
    with pytest.raises(resmem.InvalidLayout):
        resmem.Memory("lay", namespace=ns, chunk_align=3)
    with resmem.Memory("lay", namespace=ns) as memory:
        with pytest.raises(resmem.InvalidLayout):
            memory.allocate(8, align=6)
        with pytest.raises(resmem.InvalidLayout):
            memory.allocate(2**62, align=2**40)
        with pytest.raises(OverflowError):
            memory.allocate(-1)
    with pytest.raises(resmem.Error, match="strategy"):
        resmem.Memory("strat", namespace=ns, strategy="random")


def test_exists_and_already_exists(ns):
    with pytest.raises(resmem.DoesNotExist):
        resmem.View("nothing", namespace=ns)
    with pytest.raises(resmem.DoesNotExist):
        resmem.Subscriber("nothing", namespace=ns)
    with pytest.raises(resmem.DoesNotExist):
        resmem.Subscriber("nothing", namespace=ns, timeout=0.05)
    with resmem.Memory("dup", namespace=ns):
        with pytest.raises(resmem.AlreadyExists):
            resmem.Memory("dup", namespace=ns)
    with resmem.Publisher("dup", namespace=ns):
        with pytest.raises(resmem.AlreadyExists):
            resmem.Publisher("dup", namespace=ns)


def test_out_of_memory_of_a_static_memory(ns):
    with resmem.Memory("static", namespace=ns, chunk_size=64, chunks=1, strategy="static") as m:
        first = m.allocate(64)
        with pytest.raises(resmem.OutOfMemory):
            m.allocate(1 << 20)
        first.free()


def test_invalid_offsets(ns):
    with resmem.Memory("off", namespace=ns, chunk_size=4096) as memory:
        chunk = memory.allocate(4096)
        view = resmem.View("off", namespace=ns)
        with pytest.raises(resmem.InvalidOffset):
            view.register((1 << 40) << 8)  # far past segment 0
        with pytest.raises(resmem.InvalidOffset):
            view.register(chunk.offset | 200)  # segment 200 was never created
        with pytest.raises(resmem.InvalidOffset):
            view.register(chunk.offset, 1 << 30)
        # Nothing was left registered by the failures: the memory closes cleanly.
        chunk.free()


def test_permission_denied_and_remove_of_a_live_owner(ns):
    with resmem.Memory("live", namespace=ns):
        with pytest.raises(resmem.PermissionDenied):
            resmem.remove("live", namespace=ns)
    assert resmem.remove("live", namespace=ns) is False


def test_owner_dead_then_removed(ns):
    _spawn_owner_and_die(ns, "orphan")
    assert resmem.list(namespace=ns) == ["orphan"]
    with pytest.raises(resmem.OwnerDead):
        resmem.View("orphan", namespace=ns)
    assert resmem.remove("orphan", namespace=ns) is True
    assert not resmem.exists("orphan", namespace=ns)


def test_corrupted_management_header(ns):
    with resmem.Memory("garbage", namespace=ns):
        path = f"/dev/shm/{ns}garbage__mgmt"
        assert os.path.exists(path)
        with open(path, "r+b") as f:
            f.write(b"\xa5" * 64)
        with pytest.raises(resmem.Corrupted):
            resmem.View("garbage", namespace=ns)


def test_limits_of_a_service(ns):
    with resmem.Publisher("lim", namespace=ns, max_subscribers=1, max_loans=2) as publisher:
        with resmem.Subscriber("lim", namespace=ns):
            with pytest.raises(resmem.LimitReached):
                resmem.Subscriber("lim", namespace=ns)
        loans = [publisher.loan(8), publisher.loan(8)]
        with pytest.raises(resmem.LimitReached):
            publisher.loan(8)
        del loans  # returned unsent
        assert len(publisher.loan(8)) == 8


def test_closed_objects(ns):
    publisher = resmem.Publisher("shut", namespace=ns)
    subscriber = resmem.Subscriber("shut", namespace=ns)
    loan = publisher.loan(16)
    publisher.close()
    assert publisher.closed
    for call in (lambda: publisher.loan(8), lambda: publisher.send_copy(b"x"),
                 lambda: publisher.send(loan), lambda: publisher.number_of_subscribers()):
        with pytest.raises(resmem.Closed):
            call()
    # The unsent loan kept the native publisher: its bytes are still writable until it goes.
    memoryview(loan)[:4] = b"live"
    del loan
    with pytest.raises(resmem.PublisherGone):
        subscriber.receive(timeout=1)
    subscriber.close()
    with pytest.raises(resmem.Closed):
        subscriber.receive()
    memory = resmem.Memory("shut", namespace=ns)
    memory.close()
    with pytest.raises(resmem.Closed):
        memory.allocate(8)
    with pytest.raises(resmem.Closed):
        memory.number_of_active_segments()


def test_bad_arguments_are_errors_not_crashes(ns):
    with pytest.raises(resmem.Error, match="mode"):
        resmem.View("x", namespace=ns, mode="w")
    with pytest.raises(resmem.Error, match="overflow"):
        resmem.Publisher("x", namespace=ns, overflow="sometimes")
    with resmem.Publisher("x", namespace=ns) as publisher:
        with pytest.raises(resmem.Error, match="timeout"):
            resmem.Subscriber("x", namespace=ns, timeout=-1)
        with resmem.Subscriber("x", namespace=ns) as subscriber:
            for bad in (-1.0, float("nan"), float("inf")):
                with pytest.raises(resmem.Error, match="timeout"):
                    subscriber.receive(timeout=bad)
        with resmem.Publisher("y", namespace=ns) as other:
            with pytest.raises(resmem.Error, match="another publisher"):
                other.send(publisher.loan(8))


def test_timeout_while_an_owner_initialises_and_does_not_exist_at_once(ns):
    import fcntl
    import time

    # An owner mid-creation: its management object exists, has no size yet, and is locked
    # (the owner holds the lock from before the object has a size).
    path = f"/dev/shm/{ns}early__mgmt"
    with open(path, "wb") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        start = time.monotonic()
        with pytest.raises(resmem.Timeout):
            resmem.View("early", namespace=ns, timeout=0.3)
        assert time.monotonic() - start >= 0.3
    os.unlink(path)
    start = time.monotonic()
    with pytest.raises(resmem.DoesNotExist):
        resmem.View("absent", namespace=ns, timeout=30)
    assert time.monotonic() - start < 5
