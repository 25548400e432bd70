"""The network peer of a session."""

from __future__ import annotations

import attrs


@attrs.frozen
class Peer:
    """The client's address: the socket's peer, or the client a trusted PROXY header named."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
