"""rediq in a FastAPI app: enqueue from an endpoint, wait for a result, follow a task.

    uvicorn examples.fastapi_app.app:app            # REDIS_URL, or rediq's embedded server
    rediq-worker --app examples.fastapi_app.tasks:registry --queues reports

- ``POST /reports`` enqueues a report and answers 202 with where to follow it;
  ``POST /reports?wait=5`` waits up to 5 s for the result (202 if it is not ready by then: the
  task goes on, follow it at ``/tasks/{id}``).
- ``GET /tasks/{id}`` is the task's state, progress, result or error.

One ``AsyncClient`` serves every request: the lifespan opens it at startup and closes it at
shutdown (a client per request would open a connection pool per request).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse

from engine import AsyncClient, ResultTimeout, Settings, TaskFailed
from examples.fastapi_app.tasks import ReportRequest, registry, sales_report


def rediq(request: Request) -> AsyncClient:
    """The app's shared client (a FastAPI dependency)."""
    client: AsyncClient = request.app.state.rediq
    return client


Rediq = Annotated[AsyncClient, Depends(rediq)]


def create_app(redis_url: str | None = None, settings: Settings | None = None) -> FastAPI:
    """The app, on ``redis_url`` (default: ``REDIS_URL`` or the embedded server)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncClient(redis_url, settings=settings, registry=registry) as client:
            app.state.rediq = client
            yield

    app = FastAPI(title="rediq FastAPI example", lifespan=lifespan)

    @app.post("/reports", status_code=202)
    async def request_report(
        report: ReportRequest,
        client: Rediq,
        wait: Annotated[float, Query(ge=0, le=30, description="seconds to wait for the result")] = 0,
    ) -> JSONResponse:
        sent = await sales_report.enqueue_async(report, client=client)
        follow = {"id": sent.id, "state": sent.state, "status_url": f"/tasks/{sent.id}"}
        if not wait:
            return JSONResponse(follow, status_code=202)
        try:
            result = await sent.wait_async(timeout=wait)
        except ResultTimeout:
            return JSONResponse(follow, status_code=202)  # still running: follow it
        except TaskFailed as failed:
            # dead or cancelled: the task's own error, not a traceback
            info = failed.info  # None if an operator deleted it meanwhile
            state, error = (info.state, info.last_error) if info is not None else ("deleted", failed.message)
            return JSONResponse({**follow, "state": state, "error": error}, status_code=502)
        return JSONResponse({"id": sent.id, "state": "completed", "result": result}, status_code=200)

    @app.get("/tasks/{task_id}")
    async def task_status(task_id: str, client: Rediq) -> dict[str, Any]:
        info = await client.get_task(task_id)
        if info is None:
            raise HTTPException(404, f"no task {task_id} (never enqueued, or its result has expired)")
        return {
            "id": info.id,
            "type": info.type,
            "state": info.state,
            "attempts": info.attempts,
            "progress": info.progress,
            "progress_message": info.progress_message,
            "result": info.result,
            "error": info.last_error,
        }

    return app


app = create_app()
