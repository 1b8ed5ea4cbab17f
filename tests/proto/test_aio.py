"""wait_within and cancel_and_wait: a cancellation is never lost, even when it lands in
the same loop step as the awaited thing finishes (asyncio.wait_for on 3.10/3.11 returns
the result then, and a loop cancelled at shutdown runs on)."""

from __future__ import annotations

import asyncio

import pytest

from splitedge.control_plane.discovery import Discovery
from splitedge.control_plane.link import BrokerConfig, MqttLink, MqttMessage
from splitedge.proto.aio import cancel_and_wait, wait_within


async def _cancel_as_it_finishes(wait) -> asyncio.Task[object]:  # type: ignore[no-untyped-def]
    """Start ``wait(queue)``, then put an item and cancel in the same loop step."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    task = asyncio.create_task(wait(queue))
    for _ in range(3):
        await asyncio.sleep(0)  # the waiter is parked on queue.get()
    queue.put_nowait(7)
    task.cancel()
    return task


async def test_a_cancellation_landing_as_the_wait_finishes_still_raises() -> None:
    task = await _cancel_as_it_finishes(lambda q: wait_within(q.get(), 30))
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_wait_within_returns_the_result_and_times_out_like_wait_for() -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    queue.put_nowait(3)
    assert await wait_within(queue.get(), 5) == 3
    with pytest.raises(asyncio.TimeoutError):
        await wait_within(queue.get(), 0.01)
    # The timed-out get was cancelled: it does not eat the next item.
    queue.put_nowait(4)
    assert await wait_within(queue.get(), 5) == 4
    assert await wait_within(asyncio.sleep(0, result="x"), None) == "x"


async def test_an_error_inside_is_raised() -> None:
    async def fail() -> None:
        raise ValueError("inside")

    with pytest.raises(ValueError, match="inside"):
        await wait_within(fail(), 5)


async def test_a_subscription_reader_cancelled_as_a_message_lands_stops() -> None:
    """The discovery loop reads its subscription with a timeout; cancelled at the moment a
    status arrived, it used to go on reading, and leaving the fleet session hung."""
    link = MqttLink(BrokerConfig(port=1))  # never started: no broker needed
    subscription = link.subscribe("splitedge/edge/+/status", qos=1)
    reader = asyncio.create_task(subscription.get(timeout_s=30))
    for _ in range(3):
        await asyncio.sleep(0)
    subscription._deliver(MqttMessage("splitedge/edge/a/status", b"{}", 1, False))
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader


async def test_the_discovery_loop_ends_when_cancelled_as_a_status_arrives() -> None:
    link = MqttLink(BrokerConfig(port=1))
    discovery = Discovery(link, stale_after_s=60)
    loop_task = asyncio.create_task(discovery.run())
    for _ in range(3):
        await asyncio.sleep(0)
    (subscription,) = link._subscriptions
    subscription._deliver(MqttMessage("splitedge/edge/a/status", b"not json", 1, False))
    loop_task.cancel()
    done, _ = await asyncio.wait({loop_task}, timeout=5)
    assert loop_task in done and loop_task.cancelled()


async def test_cancel_and_wait_cancels_again_a_task_that_swallowed_it() -> None:
    swallowed = []

    async def stubborn() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            swallowed.append(True)  # goes on once, as the 3.11 wait_for hole does
        await asyncio.sleep(60)

    async def failing() -> None:
        raise RuntimeError("already failed")

    tasks = [asyncio.create_task(stubborn()), asyncio.create_task(failing())]
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait(tasks, every_s=0.05), 10)
    assert swallowed == [True]
    assert all(task.done() for task in tasks) and tasks[0].cancelled()
