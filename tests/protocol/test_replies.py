"""The hot-path renderings of replies must say exactly what their Reply objects say."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from trimail.protocol import replies


@given(st.text(min_size=1, max_size=40))
def test_queued_wire_is_the_queued_reply_rendered(queue_id: str) -> None:
    assert replies.queued_wire(queue_id) == replies.queued(queue_id).to_bytes()


def test_queued_wire_for_a_real_queue_id() -> None:
    wire = replies.queued_wire("6616A5AE61093056")
    assert wire == b"250 2.0.0 OK: queued as 6616A5AE61093056\r\n"
