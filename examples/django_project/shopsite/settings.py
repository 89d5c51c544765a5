"""Settings of the Django example: a minimal JSON API (no admin, no sessions) and rediq.

rediq is configured here like any other backing service, from the environment by default:

- ``REDIQ_URL``: the Redis/Valkey URL (``$REDIS_URL``; unset: rediq's embedded server)
- ``REDIQ_PREFIX``: the key prefix of this project's queues (``$REDIQ_PREFIX`` or ``rediq``)
- ``REDIQ_QUEUES`` / ``REDIQ_CONCURRENCY``: what ``manage.py rediq_worker`` serves, and how many
  tasks at once
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-a-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver"]

INSTALLED_APPS = ["django.contrib.contenttypes", "shop"]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
ROOT_URLCONF = "shopsite.urls"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("SHOP_DATABASE", BASE_DIR / "db.sqlite3"),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True

REDIQ_URL = os.environ.get("REDIS_URL")
REDIQ_PREFIX = os.environ.get("REDIQ_PREFIX", "rediq")
REDIQ_QUEUES = ["shop"]
REDIQ_CONCURRENCY = 4
