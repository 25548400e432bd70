"""Admission bookkeeping and recipient domains, driven directly with explicit times."""

from __future__ import annotations

import pytest

import trimail.server.admission as admission_module
from trimail.config.model import AdmissionConfig, Rate
from trimail.protocol import replies
from trimail.protocol.addresses import Mailbox
from trimail.server.admission import Admission, Ticket, client_key
from trimail.server.policy import RecipientDomains

NO_EXEMPTIONS = AdmissionConfig(exempt=())


def test_global_limit_counts_sessions_until_released() -> None:
    admission = Admission(AdmissionConfig(max_connections=2))
    assert admission.admit_connection() is None
    assert admission.admit_connection() is None
    assert admission.admit_connection() is replies.TOO_MANY_CONNECTIONS
    admission.release_connection()
    assert admission.admit_connection() is None


def test_per_client_limit_is_per_address() -> None:
    admission = Admission(AdmissionConfig(max_connections_per_ip=2, exempt=()))
    for _ in range(2):
        assert admission.admit_client("192.0.2.1", 0) is None
    assert admission.admit_client("192.0.2.1", 0) is replies.TOO_MANY_CONNECTIONS_FROM_YOU
    assert admission.admit_client("192.0.2.2", 0) is None
    admission.release_client("192.0.2.1", 1)
    assert admission.admit_client("192.0.2.1", 1) is None


def test_ipv6_clients_are_counted_per_84_bit_prefix_and_mapped_ipv4_as_ipv4() -> None:
    assert client_key("2001:db8::1") == client_key("2001:db8::ffff") == "2001:db8::/84"
    assert client_key("2001:db8:0:0:1000::1") != client_key("2001:db8::1")
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"
    admission = Admission(AdmissionConfig(max_connections_per_ip=1, exempt=()))
    assert admission.admit_client("2001:db8::1", 0) is None
    assert admission.admit_client("2001:db8::2", 0) is replies.TOO_MANY_CONNECTIONS_FROM_YOU


def test_exempt_networks_skip_per_client_limits() -> None:
    admission = Admission(AdmissionConfig(max_connections_per_ip=1))  # loopback exempt
    for _ in range(5):
        assert admission.admit_client("127.0.0.1", 0) is None
        assert admission.admit_client("::1", 0) is None
    assert admission.tracked_clients == 0


def test_connection_rate_uses_a_fixed_window_per_client() -> None:
    config = AdmissionConfig(max_connection_rate_per_ip=Rate(3, 60.0), exempt=())
    admission = Admission(config)
    for second in range(3):
        assert admission.admit_client("192.0.2.1", second) is None
        admission.release_client("192.0.2.1", second)
    assert admission.admit_client("192.0.2.1", 10) is replies.CONNECTION_RATE_EXCEEDED
    assert admission.admit_client("192.0.2.9", 10) is None  # another client is unaffected
    assert admission.admit_client("192.0.2.1", 60) is None  # a new window


def test_message_rate_refuses_beyond_the_limit_until_the_window_ends() -> None:
    admission = Admission(AdmissionConfig(max_message_rate_per_ip=Rate(2, 60.0), exempt=()))
    assert [admission.allow_message("192.0.2.1", 0) for _ in range(3)] == [True, True, False]
    assert admission.allow_message("192.0.2.1", 59.9) is False
    assert admission.allow_message("192.0.2.1", 60) is True


def test_memory_stays_bounded_under_a_flood_of_addresses() -> None:
    config = AdmissionConfig(max_connection_rate_per_ip=Rate(5, 1.0), exempt=())
    admission = Admission(config)
    for index in range(20_000):
        host = f"10.{index >> 16 & 255}.{index >> 8 & 255}.{index & 255}"
        now = index / 1000  # 1000 new clients a second, each window 1 s long
        assert admission.admit_client(host, now) is None
        admission.release_client(host, now)
    # Only clients whose one-second window is still open are remembered.
    assert admission.tracked_clients <= 1001


def test_beyond_the_tracking_cap_new_clients_are_admitted_untracked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(admission_module, "MAX_TRACKED_CLIENTS", 3)
    config = AdmissionConfig(
        max_connection_rate_per_ip=Rate(1, 60.0), max_connections_per_ip=1, exempt=()
    )
    admission = Admission(config)
    for index in range(3):
        assert admission.admit_client(f"192.0.2.{index}", 0) is None
        admission.release_client(f"192.0.2.{index}", 0)
    assert admission.tracked_clients == 3
    # A fourth client is not rate-tracked, but its sessions are still counted.
    assert admission.admit_client("192.0.2.9", 0) is None
    assert admission.admit_client("192.0.2.9", 0) is replies.TOO_MANY_CONNECTIONS_FROM_YOU
    admission.release_client("192.0.2.9", 0)
    assert admission.admit_client("192.0.2.9", 0) is None  # no rate window held it back
    # Tracked clients are still limited by rate.
    assert admission.admit_client("192.0.2.0", 1) is replies.CONNECTION_RATE_EXCEEDED


def test_a_ticket_releases_once_what_it_took() -> None:
    admission = Admission(AdmissionConfig(max_connections=1, max_connections_per_ip=1, exempt=()))
    assert admission.admit_connection() is None
    ticket = Ticket(admission)
    assert ticket.admit_client("192.0.2.1", 0) is None
    ticket.release(1)
    ticket.release(2)
    assert admission.sessions == 0
    assert admission.tracked_clients == 0


@pytest.mark.parametrize(
    ("recipient", "accepted"),
    [
        (Mailbox("bob", "example.org"), True),
        (Mailbox("bob", "EXAMPLE.org."), True),
        (Mailbox("bob", "mail.example.org"), False),
        (Mailbox("bob", "example.org.evil.test"), False),
        (Mailbox("bob", "xn--bcher-kva.example"), True),
        (Mailbox("bob", "bücher.example"), True),
        (Mailbox("bob", "BÜCHER.example"), True),
        (Mailbox("bob", "[192.0.2.1]"), False),
        (Mailbox("Postmaster", ""), True),
        # IDNA 2008, not 2003: the sharp s is its own letter.
        (Mailbox("bob", "strasse.test"), False),
        (Mailbox("bob", "straße.test"), True),
        (Mailbox("bob", "xn--strae-oqa.test"), True),
        (Mailbox("bob", "xn--invalid-.test"), False),
        (Mailbox("bob", "a\u200db.test"), False),
    ],
)
def test_accept_domains(recipient: Mailbox, accepted: bool) -> None:
    domains = RecipientDomains(("Example.org", "bücher.example", "straße.test"))
    assert domains.accepts(recipient) is accepted


def test_no_accept_domains_is_a_catch_all() -> None:
    domains = RecipientDomains(())
    assert domains.catch_all
    assert domains.accepts(Mailbox("anyone", "anywhere.example"))
