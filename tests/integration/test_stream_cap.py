"""One person's open /events streams are capped (EVENT_STREAMS_PER_PERSON, per process):
opening one more closes their oldest, over real sockets."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from app.events.broker import ServerEvent
from app.settings import Settings
from tests.fakes.live_server import live_account, open_events

CAP = 3


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path, database_url="mem://", event_streams_per_person=CAP)


def test_the_default_is_ten():
    assert Settings().event_streams_per_person == 10


async def test_a_stream_over_the_cap_closes_the_persons_oldest(live_server):
    broker = live_server.services.broker
    async with live_account(live_server, "many-tabs@example.com") as person, \
            live_account(live_server, "other@example.com") as other, \
            contextlib.AsyncExitStack() as stack:
        readers = []
        for _ in range(30):  # one account opening stream after stream
            reader = await stack.enter_async_context(open_events(person))
            await reader.until(lambda e: e.event == "credits")  # subscribed: snapshot sent
            readers.append(reader)
        theirs = await stack.enter_async_context(open_events(other))
        await theirs.until(lambda e: e.event == "credits")

        for old in readers[:-CAP]:  # every stream but the newest CAP was ended by the server
            await asyncio.wait_for(old.drain_to_end(), 5)
            assert old.ended
        counts = live_server.call(lambda: {u: len(s) for u, s in broker._subs.items()})
        assert sorted(counts.values()) == [1, CAP]  # another person's stream is untouched
        # the newest CAP streams are live: an event for the person reaches each of them
        person_id = next(u for u, n in counts.items() if n == CAP)
        probe = [ServerEvent("probe", "hello")]
        assert live_server.call(broker.publish, person_id, probe) == CAP
        for reader in readers[-CAP:]:
            assert (await reader.until(lambda e: e.event == "probe")).data == "hello"
