"""``python manage.py rediq_worker [--queues shop] [--concurrency 4] [--burst]``: a rediq worker
for this project's tasks, with Django set up and configured from settings (``REDIQ_*``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from engine import Worker, WorkerOptions
from engine.config import default_url
from shop.background import engine_settings
from shop.tasks import registry


class Command(BaseCommand):
    help = (
        "Run a rediq worker for this project's tasks until SIGTERM/SIGINT (or, with --burst, until drained)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--queues", help="comma-separated queues (default: settings.REDIQ_QUEUES)")
        parser.add_argument(
            "--concurrency", type=int, help="tasks at once (default: settings.REDIQ_CONCURRENCY)"
        )
        parser.add_argument("--burst", action="store_true", help="stop once the queues are drained")

    def handle(self, *args: Any, **options: Any) -> None:
        queues = options["queues"].split(",") if options["queues"] else list(settings.REDIQ_QUEUES)
        concurrency = options["concurrency"] or settings.REDIQ_CONCURRENCY
        if concurrency < 1:
            raise CommandError("--concurrency must be at least 1")
        worker = Worker(
            registry,
            settings.REDIQ_URL or default_url(),
            WorkerOptions(queues=queues, concurrency=concurrency, burst=options["burst"]),
            engine_settings(),
        )
        self.stdout.write(f"rediq worker {worker.id} serving {', '.join(queues)}")
        code = worker.run_forever()
        if code:
            raise CommandError(f"the worker stopped with exit code {code}", returncode=code)
        self.stdout.write("rediq worker stopped")
