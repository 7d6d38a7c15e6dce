"""The gateway's tasks stop even when a library swallowed their cancellation (edge/task_stop.py)."""

from __future__ import annotations

import asyncio

from edge.task_stop import cancel_and_wait


async def test_a_task_that_swallowed_its_cancellation_is_cancelled_again() -> None:
    swallowed = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            swallowed.set()  # what a library did with it
        while True:  # ... and the poll loop goes on
            await asyncio.sleep(0.01)

    task = asyncio.create_task(stubborn())
    plain = asyncio.create_task(asyncio.Event().wait())
    await asyncio.sleep(0)  # let both start waiting
    await asyncio.wait_for(cancel_and_wait([task, plain], again_after_s=0.05), timeout=10)
    assert swallowed.is_set()
    assert task.cancelled() and plain.cancelled()


async def test_a_cancellation_arriving_with_the_answer_of_wait_for_still_stops_the_loop() -> None:
    """The case met in the field on Python 3.11: wait_for returns the answer that arrived in the
    same loop iteration as the cancellation, and the loop around it carries on."""
    loop = asyncio.get_running_loop()
    answers: list[asyncio.Future[int]] = []
    waiting = asyncio.Event()

    async def poll_forever() -> None:
        while True:
            answer: asyncio.Future[int] = loop.create_future()
            answers.append(answer)
            waiting.set()
            await asyncio.wait_for(answer, timeout=10)
            waiting.clear()
            await asyncio.sleep(0.01)

    task = asyncio.create_task(poll_forever())
    await waiting.wait()
    answers[-1].set_result(1)  # the answer and the cancellation, in one loop iteration
    await asyncio.wait_for(cancel_and_wait([task], again_after_s=0.05), timeout=10)
    assert task.done()
