"""Memories, chunks, views and registrations: buffers over the shared bytes, in place."""

import gc

import numpy as np
import pytest

import resmem


def test_chunk_is_a_writable_buffer_a_view_reads_in_place(ns):
    with resmem.Memory("frames", namespace=ns, chunk_size=4096, chunks=4) as memory:
        chunk = memory.allocate(4096)
        assert len(chunk) == 4096
        array = np.frombuffer(chunk, dtype=np.uint8)
        array[:] = np.arange(4096) % 251
        del array
        view = resmem.View("frames", namespace=ns)
        with view.register(chunk.offset, 4096) as reg:
            seen = np.frombuffer(reg, dtype=np.uint8)
            assert (seen == np.arange(4096) % 251).all()
            # In place: a later write through the chunk shows through the registration.
            memoryview(chunk)[7] = 99
            assert seen[7] == 99
            del seen
        chunk.free()
    assert not resmem.exists("frames", namespace=ns)


def test_registration_to_the_end_of_the_payload_and_past_it(ns):
    memory = resmem.Memory("big", namespace=ns, chunk_size=1 << 16)
    chunk = memory.allocate(1 << 16)
    view = resmem.View("big", namespace=ns, mode="r")
    whole = view.register(chunk.offset)
    assert len(whole) >= 1 << 16
    whole.unregister()
    with pytest.raises(resmem.InvalidOffset):
        view.register(chunk.offset, len(whole) + 1)
    chunk.free()
    memory.close()


def test_growth_gives_chunks_in_new_segments(ns):
    memory = resmem.Memory("grow", namespace=ns, chunk_size=4096, chunks=1)
    small = memory.allocate(4096)
    large = memory.allocate(1 << 20)
    assert large.segment != small.segment
    assert memory.number_of_active_segments() == 2
    view = resmem.View("grow", namespace=ns, mode="rw")
    reg = view.register(large.offset, 1 << 20)
    np.frombuffer(reg, dtype=np.uint64)[:] = 0x0102030405060708
    assert bytes(memoryview(large)[:8]) == bytes([8, 7, 6, 5, 4, 3, 2, 1])
    reg.unregister()
    small.free()
    large.free()
    memory.close()


def test_read_only_registration_refuses_writes(ns):
    memory = resmem.Memory("ro", namespace=ns)
    chunk = memory.allocate(64)
    reg = resmem.View("ro", namespace=ns).register(chunk.offset, 64)
    mv = memoryview(reg)
    assert mv.readonly
    with pytest.raises(TypeError):
        mv[0] = 1
    with pytest.raises(ValueError):
        np.frombuffer(reg, dtype=np.uint8)[0] = 1
    mv.release()
    reg.unregister()
    chunk.free()
    memory.close()


def test_exported_buffers_keep_their_bytes_and_block_give_back(ns):
    memory = resmem.Memory("life", namespace=ns)
    chunk = memory.allocate(256)
    array = np.frombuffer(chunk, dtype=np.uint8)
    with pytest.raises(BufferError):
        chunk.free()
    with pytest.raises(BufferError):
        memory.close()
    reg = resmem.View("life", namespace=ns).register(chunk.offset, 256)
    held = memoryview(reg)
    with pytest.raises(BufferError):
        reg.unregister()
    # Dropping the Python objects does not unmap what a buffer still points at.
    del reg
    gc.collect()
    array[:] = 5
    assert bytes(held[:4]) == b"\x05" * 4
    held.release()
    del array
    chunk.free()
    chunk.free()  # twice is a no-op
    with pytest.raises(BufferError, match="freed"):
        memoryview(chunk)
    memory.close()
    assert memory.closed


def test_chunks_of_a_closed_memory_are_closed(ns):
    memory = resmem.Memory("closed", namespace=ns)
    chunk = memory.allocate(8)
    memory.close()
    with pytest.raises(BufferError):
        memoryview(chunk)
    with pytest.raises(resmem.Closed):
        memory.allocate(8)
    chunk.free()


def test_errors_are_typed(ns):
    with pytest.raises(resmem.DoesNotExist):
        resmem.View("nothing", namespace=ns)
    with pytest.raises(resmem.InvalidName):
        resmem.Memory("a/b", namespace=ns)
    with pytest.raises(resmem.InvalidLayout):
        resmem.Memory("lay", namespace=ns, chunk_align=3)
    memory = resmem.Memory("dup", namespace=ns)
    with pytest.raises(resmem.AlreadyExists):
        resmem.Memory("dup", namespace=ns)
    with pytest.raises(resmem.InvalidLayout):
        memory.allocate(8, align=6)
    static = resmem.Memory("static", namespace=ns, chunk_size=64, chunks=1, strategy="static")
    with pytest.raises(resmem.OutOfMemory):
        static.allocate(1 << 20)
    with pytest.raises(resmem.PermissionDenied):
        resmem.remove("dup", namespace=ns)
    for e in (resmem.DoesNotExist, resmem.PublisherGone, resmem.OutOfMemory, resmem.Closed):
        assert issubclass(e, resmem.Error)
    static.close()
    memory.close()
    assert resmem.remove("dup", namespace=ns) is False


def test_list_and_exists_are_relative_to_the_namespace(ns):
    a = resmem.Memory("a", namespace=ns)
    b = resmem.Memory("b", namespace=ns)
    assert sorted(resmem.list(namespace=ns)) == ["a", "b"]
    assert resmem.exists("a", namespace=ns)
    assert not resmem.exists("a", namespace=ns + "other_")
    a.close()
    b.close()
