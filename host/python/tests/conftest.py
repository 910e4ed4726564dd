import os
import itertools

import pytest

import resmem

_counter = itertools.count()


@pytest.fixture
def ns():
    """A namespace of this test alone; nothing may be left in it afterwards."""
    namespace = f"rmpy{os.getpid()}_{next(_counter)}_"
    yield namespace
    assert resmem.list(namespace=namespace) == []
    leftovers = [n for n in os.listdir("/dev/shm") if n.startswith(namespace)]
    assert leftovers == []
