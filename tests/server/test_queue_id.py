"""Queue ids: unique, time-ordered within a process, and carrying the process's own id, also in
a forked child (which must not repeat its parent's ids)."""

from __future__ import annotations

import os

from trimail.server.queue_id import new_queue_id


def pid_part(queue_id: str) -> str:
    return queue_id[-9:-4]


def test_ids_are_unique_and_sorted_in_the_order_made() -> None:
    ids = [new_queue_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    # Same length ids compare like their hex time prefix: the order they were made.
    same_length = [queue_id for queue_id in ids if len(queue_id) == len(ids[0])]
    assert same_length == sorted(same_length)


def test_the_process_part_is_this_process_and_a_forked_childs_own() -> None:
    assert pid_part(new_queue_id()) == f"{os.getpid() & 0xFFFFF:05X}"
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child only
        try:
            os.write(write_end, f"{os.getpid()} {new_queue_id()}".encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        child_pid, child_id = pipe.read().decode().split()
    os.waitpid(child, 0)
    assert pid_part(child_id) == f"{int(child_pid) & 0xFFFFF:05X}"
