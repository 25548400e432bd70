"""Accept mail only for known users; anyone else gets 550 5.1.1 at RCPT time.

Refusing at RCPT (not after DATA) is what keeps a receiver from becoming a backscatter
source: the sending MTA learns at once and bounces to its own user. Accepted mail goes into a
durable Maildir, exactly as ``trimail serve`` stores it.

    python examples/recipient_policy.py --maildir ./maildir --user alice@example.org
"""

from __future__ import annotations

import argparse
from pathlib import Path

import trio

import trimail

UNKNOWN_USER = trimail.Reply(550, "5.1.1", ("Recipient address rejected: User unknown",))


class KnownUsers(trimail.MaildirHandler):
    def __init__(self, root: Path, users: set[str]) -> None:
        super().__init__(root)
        self._users = {user.lower() for user in users}

    async def on_rcpt(
        self, session: trimail.SessionInfo, recipient: trimail.Mailbox
    ) -> trimail.Reply | None:
        if str(recipient).lower() in self._users:
            return None
        return UNKNOWN_USER


async def main(
    maildir: Path,
    users: set[str],
    port: int = 2525,
    *,
    task_status: trio.TaskStatus[list[trimail.ListenAddress]] = trio.TASK_STATUS_IGNORED,
) -> None:
    config = trimail.ServerConfig(listen=(trimail.ListenAddress("127.0.0.1", port),))
    await trimail.serve(config, KnownUsers(maildir, users), task_status=task_status)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--maildir", type=Path, default=Path("maildir"))
    parser.add_argument("--user", action="append", required=True)
    parser.add_argument("--port", type=int, default=2525)
    arguments = parser.parse_args()
    trio.run(main, arguments.maildir, set(arguments.user), arguments.port)
