"""Which recipients this server takes mail for: relay safety for ``accept_domains``."""

from __future__ import annotations

import contextlib

from ..protocol.addresses import Mailbox


def _normal(domain: str) -> str:
    return domain.rstrip(".").lower()


def _spellings(domain: str) -> set[str]:
    """A domain as written and, for an internationalised one, its ASCII (IDNA) form too."""
    names = {_normal(domain)}
    if not domain.isascii():
        with contextlib.suppress(UnicodeError):  # not a valid IDN: only the spelling as given
            names.add(_normal(domain.encode("idna").decode("ascii")))
    return names


class RecipientDomains:
    """``accept_domains``: without any, every recipient is accepted (a catch-all)."""

    def __init__(self, domains: tuple[str, ...]) -> None:
        self._domains: set[str] = set()
        for domain in domains:
            self._domains |= _spellings(domain)

    @property
    def catch_all(self) -> bool:
        return not self._domains

    def accepts(self, recipient: Mailbox) -> bool:
        # The bare <Postmaster> (RFC 5321 §4.1.1.3) is always ours.
        if self.catch_all or not recipient.domain:
            return True
        return bool(_spellings(recipient.domain) & self._domains)
