"""The ray engine's front-end gate: frames go to a model's replicas in arrival order, at
most the replicas' slots at a time, and one that waits past its deadline gives up
without leaking a slot."""

from __future__ import annotations

import asyncio

from splitedge.edge.engine import FifoGate


async def test_frames_past_the_limit_are_let_through_in_arrival_order():
    gate = FifoGate()
    order: list[int] = []
    assert await gate.enter(2, None) and await gate.enter(2, None)

    async def frame(i: int) -> None:
        assert await gate.enter(2, None)
        order.append(i)

    waiting = [asyncio.create_task(frame(i)) for i in range(5)]
    await asyncio.sleep(0)
    assert gate.waiting == 5 and not order
    for _ in range(5):
        gate.leave(2)  # one slot frees: the oldest waiter takes it
        await asyncio.sleep(0)
    await asyncio.gather(*waiting)
    assert order == [0, 1, 2, 3, 4]
    assert gate.running == 2


async def test_more_replicas_let_waiting_frames_through_at_once():
    gate = FifoGate()
    assert await gate.enter(1, None)
    waiting = [asyncio.create_task(gate.enter(1, None)) for _ in range(3)]
    await asyncio.sleep(0)
    gate.wake(4)  # autoscaling: four slots now
    assert await asyncio.gather(*waiting) == [True, True, True]
    assert gate.running == 4 and gate.waiting == 0


async def test_a_frame_whose_deadline_passes_while_waiting_gives_up_and_leaks_nothing():
    gate = FifoGate()
    assert await gate.enter(1, None)
    assert await gate.enter(1, 0.01) is False
    assert gate.waiting == 0 and gate.running == 1
    cancelled = asyncio.create_task(gate.enter(1, None))
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.gather(cancelled, return_exceptions=True)
    assert gate.waiting == 0
    gate.leave(1)
    assert gate.running == 0
    assert await gate.enter(1, None)  # the slot is there for the next frame
