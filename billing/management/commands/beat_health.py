"""python manage.py beat_health — beat's health check: a billing clock tick ran in this slot or the previous one."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from core.locks import beat_slot_key


class Command(BaseCommand):
    help = (
        "Exit 0 when some beat ticked the billing clock within the last two tick intervals (any host's beat: the "
        "tick claims its slot in Redis), 1 otherwise. For a liveness probe of beat."
    )

    def handle(self, *args, **options) -> None:
        every = settings.CELERY_BILLING_TICK_SECONDS
        now = timezone.now()
        for instant in (now, now - timedelta(seconds=every)):
            claimed = cache.get(beat_slot_key("billing-clock-tick", every=every, now=instant))
            if claimed:
                self.stdout.write(f"ok: the billing clock ticked at {claimed}")
                return
        raise CommandError(f"no billing clock tick in the last {2 * every} s: is beat running?")
