"""Which recipients this server takes mail for: relay safety for ``accept_domains``.

Domains are compared by their IDNA 2008 A-labels (UTS 46 mapping, non-transitional, as
browsers and current MTAs resolve them), so "Bücher.example", "bücher.example" and
"xn--bcher-kva.example" are one domain while "straße.test" and "strasse.test" stay two.
"""

from __future__ import annotations

import idna

from ..protocol.addresses import Mailbox


def a_label(domain: str) -> str | None:
    """The domain's canonical ASCII form, or None if it is not a valid IDNA 2008 name."""
    name = domain.rstrip(".")
    if name.isascii():
        return name.lower()
    try:
        return idna.encode(name, uts46=True, transitional=False).decode("ascii")
    except idna.IDNAError:
        return None


class RecipientDomains:
    """``accept_domains``: without any, every recipient is accepted (a catch-all)."""

    def __init__(self, domains: tuple[str, ...]) -> None:
        names = {a_label(domain) for domain in domains}
        self._domains = {name for name in names if name}

    @property
    def catch_all(self) -> bool:
        return not self._domains

    def accepts(self, recipient: Mailbox) -> bool:
        # The bare <Postmaster> (RFC 5321 §4.1.1.3) is always ours.
        if self.catch_all or not recipient.domain:
            return True
        return a_label(recipient.domain) in self._domains
