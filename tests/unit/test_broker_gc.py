"""The broker keeps open streams out of full garbage collections: it freezes them soon
after they open, and thaws everything once as many streams have closed as were frozen (so
the closed streams' reference cycles are collected, not kept for ever)."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

from app.events import broker as broker_module
from app.events.broker import Broker

pytestmark = pytest.mark.timeout(10)


@pytest.fixture
def thawed(monkeypatch):
    """Whatever a test froze goes back to the collector afterwards."""
    monkeypatch.setattr(broker_module, "FREEZE_AFTER", 0.05)
    gc.unfreeze()
    yield
    gc.unfreeze()


class Cycle:
    """Stands in for a stream's objects: a reference cycle, freed only by the collector."""

    def __init__(self):
        self.me = self


async def test_new_streams_are_frozen_soon_after_they_open(thawed):
    broker = Broker(ping_seconds=0)
    broker.freeze_gc = True
    subs = [broker.subscribe("alice") for _ in range(3)]
    held = Cycle()  # an object the open streams hold
    assert gc.get_freeze_count() == 0
    for _ in range(50):
        await asyncio.sleep(0.01)
        if gc.get_freeze_count():
            break
    assert broker.freezes == 1 and gc.get_freeze_count() > 0
    assert not any(o is held for o in gc.get_objects())  # out of every generation
    broker.close_all()
    del subs


async def test_thawed_when_as_many_streams_closed_as_were_frozen(thawed):
    broker = Broker(ping_seconds=0)
    broker.freeze_gc = True
    subs = [broker.subscribe("alice") for _ in range(4)]
    garbage = Cycle()
    gone = weakref.ref(garbage)
    broker.freeze()
    assert gc.get_freeze_count() > 0
    del garbage  # a cycle frozen with the streams: only a thaw lets it be collected
    for sub in subs[:3]:
        broker.unsubscribe(sub)
        broker.unsubscribe(sub)  # a stream unsubscribes from several places: counted once
    gc.collect()
    assert gone() is not None and gc.get_freeze_count() > 0, "thawed too early"
    broker.unsubscribe(subs[3])
    assert gc.get_freeze_count() == 0  # everything is the collector's again
    gc.collect()
    assert gone() is None


async def test_off_by_default():
    broker = Broker(ping_seconds=0)
    broker.subscribe("alice")
    await asyncio.sleep(0.05)
    assert broker.freezes == 0 and "gc-freeze" not in broker._helpers
