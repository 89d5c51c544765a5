"""The FastAPI example against a real server and a real worker (rediq's test kit):
``python -m pytest examples/fastapi_app``.

The app runs in process through httpx's ASGI transport, with its lifespan (so the tested app
opens and closes its ``AsyncClient`` as it does under uvicorn); ``run_until_idle_async`` is a
real worker, in the same event loop, until the queue is empty.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from engine import AsyncClient, Settings
from engine.idle import outstanding
from engine.testing import run_until_idle_async
from examples.fastapi_app.app import create_app
from examples.fastapi_app.tasks import registry


@pytest.fixture
async def http(rediq_url: str, rediq_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(rediq_url, rediq_settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://shop.test") as client:
            yield client


async def work_when_enqueued(url: str, settings: Settings) -> None:
    """A worker that starts once the request has enqueued (a worker started on an empty queue
    would find it idle and stop at once)."""
    deadline = time.monotonic() + 30
    async with AsyncClient(url, settings=settings) as reader:
        while not await reader.run(outstanding(settings, registry.queues, 0)):
            assert time.monotonic() < deadline, "the endpoint enqueued nothing"
            await asyncio.sleep(0.01)
    await run_until_idle_async(registry, url, settings)


async def test_enqueue_then_follow_the_task_to_its_result(
    http: httpx.AsyncClient, rediq_url: str, rediq_settings: Settings
) -> None:
    accepted = await http.post("/reports", json={"region": "north", "days": 3})
    assert accepted.status_code == 202
    task_id = accepted.json()["id"]
    assert accepted.json()["status_url"] == f"/tasks/{task_id}"

    pending = (await http.get(f"/tasks/{task_id}")).json()
    assert pending["state"] == "pending" and pending["result"] is None

    report = await run_until_idle_async(registry, rediq_url, rediq_settings)
    assert report.completed == 1

    done = (await http.get(f"/tasks/{task_id}")).json()
    assert done["state"] == "completed" and done["progress"] == 100
    assert done["result"] == {"region": "north", "days": 3, "orders": 128, "revenue_cents": 128 * 2599}


async def test_an_endpoint_waits_for_the_result(
    http: httpx.AsyncClient, rediq_url: str, rediq_settings: Settings
) -> None:
    response, _ = await asyncio.gather(
        http.post("/reports", params={"wait": 20}, json={"region": "south", "days": 1}),
        work_when_enqueued(rediq_url, rediq_settings),
    )
    assert response.status_code == 200
    assert response.json()["result"]["orders"] == 40


async def test_a_result_not_ready_in_time_answers_202_and_the_task_goes_on(
    http: httpx.AsyncClient, rediq_url: str, rediq_settings: Settings
) -> None:
    response = await http.post("/reports", params={"wait": 0.2}, json={"region": "east"})
    assert response.status_code == 202  # no worker yet: the wait times out, the task is kept
    task_id = response.json()["id"]
    await run_until_idle_async(registry, rediq_url, rediq_settings)
    assert (await http.get(f"/tasks/{task_id}")).json()["state"] == "completed"


async def test_a_dead_task_answers_with_its_error(
    http: httpx.AsyncClient, rediq_url: str, rediq_settings: Settings
) -> None:
    response, _ = await asyncio.gather(
        http.post("/reports", params={"wait": 20}, json={"region": "atlantis"}),
        work_when_enqueued(rediq_url, rediq_settings),
    )
    assert response.status_code == 502
    assert response.json()["state"] == "dead"
    assert "no such region: atlantis" in response.json()["error"]


async def test_bad_input_and_unknown_tasks(http: httpx.AsyncClient) -> None:
    assert (await http.post("/reports", json={"region": "", "days": 0})).status_code == 422
    missing = await http.get("/tasks/no-such-task")
    assert missing.status_code == 404 and "no task no-such-task" in missing.json()["detail"]
