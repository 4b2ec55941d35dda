"""A worker's messages cross to the simulating process with their large bytes through shared memory."""

from __future__ import annotations

import errno
import multiprocessing as mp
import os
import pickle
import threading
from collections.abc import Iterator

import pytest

from fedcore.protocol.messages import Reply
from fedcore.sim.handover import SHARED_FROM, Receiver, Sender, shared_memory_works

needs_memfd = pytest.mark.skipif(not shared_memory_works(), reason="no memfd_create on this platform")


@pytest.fixture
def ends() -> Iterator[tuple[mp.connection.Connection, mp.connection.Connection]]:
    parent, child = mp.Pipe()
    yield parent, child
    parent.close()
    child.close()


def through(sender: Sender, receiver: Receiver, message: object) -> object:
    """`message` sent and received on two threads (a whole pickle can outgrow the socket's buffer)."""
    got: list[object] = []
    ends = [
        threading.Thread(target=sender.send, args=(message,), daemon=True),
        threading.Thread(target=lambda: got.append(receiver.receive()), daemon=True),
    ]
    for end in ends:
        end.start()
    for end in ends:
        end.join(timeout=10)
    assert got, "the message did not arrive within 10 s"
    return got[0]


def reply(client: int, size: int) -> Reply:
    frame = bytes([client % 251]) * size
    return Reply(1, client, (frame, b"small"), 10, 2, 0.5)


@pytest.mark.parametrize("shared", [pytest.param(True, marks=needs_memfd), False])
def test_a_message_arrives_as_it_was_sent(ends: tuple, shared: bool) -> None:
    parent, child = ends
    message = ("ok", [reply(3, SHARED_FROM), reply(4, 3 * SHARED_FROM + 1)], {"note": b"x" * 10})
    sender, receiver = Sender(child, shared=shared), Receiver(parent)
    got = through(sender, receiver, message)
    assert got == message
    assert all(type(p) is bytes for r in got[1] for p in r.payloads)
    sender.close()
    receiver.close()


@needs_memfd
def test_a_received_message_stays_as_it_was_when_the_worker_sends_the_next(ends: tuple) -> None:
    parent, child = ends
    sender, receiver = Sender(child), Receiver(parent)
    first = through(sender, receiver, [reply(1, 2 * SHARED_FROM)])
    second = through(sender, receiver, [reply(2, 2 * SHARED_FROM)])  # written over the same file
    third = through(sender, receiver, [reply(3, 9 * SHARED_FROM)])  # larger: a new file, mapped anew
    assert first == [reply(1, 2 * SHARED_FROM)]
    assert second == [reply(2, 2 * SHARED_FROM)]
    assert third == [reply(3, 9 * SHARED_FROM)]


@needs_memfd
def test_a_message_naming_bytes_past_the_shared_file_is_refused(ends: tuple) -> None:
    parent, child = ends
    Sender(child).send([b"y" * SHARED_FROM])
    receiver = Receiver(parent)
    receiver.receive()
    child.send_bytes(pickle.dumps("no bytes here"))
    child.send(((10 * SHARED_FROM,), False))  # forged: the file holds one SHARED_FROM
    with pytest.raises(pickle.UnpicklingError, match="past its shared memory"):
        receiver.receive()


@needs_memfd
def test_a_worker_short_of_memory_sends_the_message_through_the_pipe(
    ends: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    parent, child = ends
    sender, receiver = Sender(child), Receiver(parent)

    def no_memory(fd: int, offset: int, size: int) -> None:
        raise OSError(errno.ENOMEM, "Cannot allocate memory")

    with monkeypatch.context() as patched:
        patched.setattr(os, "posix_fallocate", no_memory)
        assert through(sender, receiver, [reply(1, 2 * SHARED_FROM)]) == [reply(1, 2 * SHARED_FROM)]
    again = [reply(2, 2 * SHARED_FROM)]  # memory again: shared memory again
    assert through(sender, receiver, again) == again


def test_a_closed_worker_end_reads_as_eof(ends: tuple) -> None:
    parent, child = ends
    child.close()
    with pytest.raises(EOFError):
        Receiver(parent).receive()
