"""A first task (the README's quickstart): run it with
``rediq-worker --app examples.quickstart.tasks:registry --queues greetings``."""

from __future__ import annotations

from pydantic import BaseModel

from engine import Registry, TaskContext

registry = Registry()


class Greeting(BaseModel):
    name: str


@registry.task("greet", queue="greetings", max_retry=2, payload=Greeting)
async def greet(ctx: TaskContext, greeting: Greeting) -> str:
    ctx.progress(50, "thinking of something nice")
    return f"Hello, {greeting.name}!"
