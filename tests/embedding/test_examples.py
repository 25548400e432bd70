"""Each program in examples/ runs and does what its docstring says, over real sockets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio
from examples import custom_spool, recipient_policy, webhook_channel

import trimail

from .client import Client

BOUND = 20.0
MESSAGE = b"Subject: example\r\n\r\nHello.\r\n"


async def test_webhook_channel_posts_each_message(capsys: pytest.CaptureFixture[str]) -> None:
    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            addresses: list[trimail.ListenAddress] = await nursery.start(webhook_channel.main, 0)
            client = await Client.connect(addresses[0].port)
            await client.reply()
            code, _ = await client.send_message("a@example.org", ["hook@example.org"], MESSAGE)
            assert code == 250
            await client.aclose()
            captured = ""
            while "queue_id" not in captured:  # the consumer task prints asynchronously
                await trio.sleep(0.01)
                captured += capsys.readouterr().out
            nursery.cancel_scope.cancel()
    event = json.loads(captured.strip().splitlines()[-1])
    assert event["to"] == ["hook@example.org"]
    assert event["content"] == MESSAGE.decode()
    assert event["client"] == "127.0.0.1"


async def test_recipient_policy_refuses_unknown_users(tmp_path: Path) -> None:
    maildir = tmp_path / "maildir"
    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            addresses: list[trimail.ListenAddress] = await nursery.start(
                recipient_policy.main, maildir, {"Alice@example.org"}, 0
            )
            client = await Client.connect(addresses[0].port)
            await client.reply()
            refused = await client.send_message("x@example.net", ["mallory@example.org"], MESSAGE)
            assert refused == (550, "5.1.1 Recipient address rejected: User unknown")
            assert (await client.command("RSET"))[0] == 250
            accepted = await client.send_message("x@example.net", ["alice@example.org"], MESSAGE)
            assert accepted[0] == 250
            await client.aclose()
            nursery.cancel_scope.cancel()
    [stored] = list((maildir / "new").iterdir())
    assert stored.read_bytes().endswith(MESSAGE)


async def test_custom_spool_stores_eml_files(tmp_path: Path) -> None:
    directory = tmp_path / "eml"
    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            addresses: list[trimail.ListenAddress] = await nursery.start(
                custom_spool.main, directory, 0
            )
            client = await Client.connect(addresses[0].port)
            await client.reply()
            code, text = await client.send_message("a@example.org", ["b@example.org"], MESSAGE)
            assert code == 250
            await client.aclose()
            nursery.cancel_scope.cancel()
    queue_id = text.rsplit(" ", 1)[1]
    stored = (directory / f"{queue_id}.eml").read_bytes()
    assert stored.startswith(b"Return-Path: <a@example.org>\r\nReceived: ")
    assert stored.endswith(MESSAGE)
    assert [path.name for path in directory.iterdir()] == [f"{queue_id}.eml"]
