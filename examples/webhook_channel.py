"""Hand every accepted message to a consumer task through a Trio memory channel.

The shape of a webhook receiver: the SMTP side only queues, a separate task posts (here: it
prints one JSON line per message; swap in an HTTP client to POST it). The channel's small
buffer is the backpressure: when the consumer falls behind, ``deliver`` waits, and the client
waits for its 250, instead of messages piling up in memory.

    python examples/webhook_channel.py --port 2525
"""

from __future__ import annotations

import argparse
import json

import trio

import trimail


class ChannelHandler(trimail.BaseHandler):
    def __init__(self, send: trio.MemorySendChannel[dict[str, object]]) -> None:
        self._send = send

    async def deliver(
        self, envelope: trimail.Envelope, message: trimail.Message
    ) -> trimail.Receipt | trimail.Reply:
        if message.size > 1024 * 1024:
            return trimail.Reply(552, "5.3.4", ("This hook takes messages up to 1 MiB",))
        content = await message.read()
        await self._send.send(
            {
                "queue_id": message.queue_id,
                "client": message.peer.host,
                "from": str(envelope.sender) if envelope.sender else "",
                "to": [str(recipient) for recipient in envelope.recipients],
                "size": message.size,
                "content": content.decode("utf-8", errors="replace"),
            }
        )
        return message.queue_id


async def post_each(receive: trio.MemoryReceiveChannel[dict[str, object]]) -> None:
    async for event in receive:
        print(json.dumps(event), flush=True)


async def main(
    port: int = 2525,
    *,
    task_status: trio.TaskStatus[list[trimail.ListenAddress]] = trio.TASK_STATUS_IGNORED,
) -> None:
    send, receive = trio.open_memory_channel[dict[str, object]](8)
    config = trimail.ServerConfig(listen=(trimail.ListenAddress("127.0.0.1", port),))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(post_each, receive)
        addresses = await nursery.start(trimail.serve, config, ChannelHandler(send))
        task_status.started(addresses)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=2525)
    trio.run(main, parser.parse_args().port)
