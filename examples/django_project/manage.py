#!/usr/bin/env python
"""The Django example's manage.py; run from this directory:

python manage.py migrate
python manage.py runserver                 # POST /orders/ item=tea quantity=1
python manage.py rediq_worker              # the project's worker (--burst: until drained)
"""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shopsite.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
