"""resmem: resizable shared memory and a zero-copy publish-subscribe channel.

Python peers of the native ``resmem`` crate: a :class:`Memory` owns named shared memory and
hands out :class:`Chunk` buffers; a :class:`View` maps another process's (or a wasm guest's)
memory from offsets; :class:`Publisher` and :class:`Subscriber` exchange samples in place.
Chunks, registrations, loans and samples support the buffer protocol, so
``numpy.frombuffer(sample, dtype=...)`` sees the shared bytes without a copy.

``namespace=`` is the native ``Config`` prefix: the string ``resmem run --namespace`` takes.
"""

from ._resmem import (
    AlreadyExists,
    Chunk,
    Closed,
    Corrupted,
    DoesNotExist,
    Error,
    InvalidLayout,
    InvalidName,
    InvalidOffset,
    LimitReached,
    Loan,
    Memory,
    OutOfMemory,
    OwnerDead,
    PermissionDenied,
    Publisher,
    PublisherGone,
    Registration,
    Sample,
    Subscriber,
    Timeout,
    View,
    exists,
    list,
    remove,
)

__all__ = [
    "AlreadyExists", "Chunk", "Closed", "Corrupted", "DoesNotExist", "Error", "InvalidLayout",
    "InvalidName", "InvalidOffset", "LimitReached", "Loan", "Memory", "OutOfMemory", "OwnerDead",
    "PermissionDenied", "Publisher", "PublisherGone", "Registration", "Sample", "Subscriber",
    "Timeout", "View", "exists", "list", "remove",
]
