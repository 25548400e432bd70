"""Store each message as ``<queue id>.eml`` in a directory of your choosing, durably.

A handler that writes files itself: it streams the message (spooled by trimail, in memory or
in a temporary file when large) into a file in a worker thread, fsyncs the file and the
directory, and only then returns its receipt, so trimail's 250 still means "on disk".

    python examples/custom_spool.py --directory ./spool
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import trio

import trimail


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class EmlDirectory(trimail.BaseHandler):
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def prepare(self) -> None:
        await trio.to_thread.run_sync(lambda: self.directory.mkdir(parents=True, exist_ok=True))

    async def deliver(
        self, envelope: trimail.Envelope, message: trimail.Message
    ) -> trimail.Receipt | trimail.Reply:
        final = self.directory / f"{message.queue_id}.eml"
        partial = final.with_suffix(".part")
        file = await trio.open_file(partial, "wb")
        try:
            async with file:
                await file.write(message.trace_headers)
                async for chunk in message.chunks():
                    await file.write(chunk)
                await file.flush()
                await trio.to_thread.run_sync(os.fsync, file.fileno())
            await trio.to_thread.run_sync(os.rename, partial, final)
            await trio.to_thread.run_sync(_fsync_directory, self.directory)
        except OSError as exc:
            await trio.to_thread.run_sync(lambda: partial.unlink(missing_ok=True))
            raise trimail.DeliveryError(f"cannot store {final}: {exc}") from exc
        return str(final)


async def main(
    directory: Path,
    port: int = 2525,
    *,
    task_status: trio.TaskStatus[list[trimail.ListenAddress]] = trio.TASK_STATUS_IGNORED,
) -> None:
    config = trimail.ServerConfig(listen=(trimail.ListenAddress("127.0.0.1", port),))
    await trimail.serve(config, EmlDirectory(directory), task_status=task_status)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--directory", type=Path, default=Path("spool"))
    parser.add_argument("--port", type=int, default=2525)
    arguments = parser.parse_args()
    trio.run(main, arguments.directory, arguments.port)
