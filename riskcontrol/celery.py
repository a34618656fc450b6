from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "riskcontrol.settings")

app = Celery("riskcontrol")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Every app's tasks module (brokers.tasks), and the packages of the kill switch that
# define tasks in their own module (notification deliveries).
app.autodiscover_tasks()
app.autodiscover_tasks(["killswitch.notifications"])
