"""Django for the example's tests, without pytest-django: settings from ``shopsite.settings``
on a throwaway sqlite file, migrated once. Tests run outside any test transaction, as requests
do, so ``transaction.on_commit`` callbacks fire on commit (inside Django's ``TestCase`` they
would never fire)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import django
import pytest

DATABASE = Path(tempfile.mkdtemp(prefix="rediq-django-example-")) / "shop.sqlite3"
os.environ["DJANGO_SETTINGS_MODULE"] = "shopsite.settings"
os.environ["SHOP_DATABASE"] = str(DATABASE)
django.setup()


@pytest.fixture(scope="session", autouse=True)
def _database() -> None:
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


@pytest.fixture(autouse=True)
def _empty_tables() -> Iterator[None]:
    from shop.models import Order, Stock

    yield
    Order.objects.all().delete()
    Stock.objects.all().delete()
