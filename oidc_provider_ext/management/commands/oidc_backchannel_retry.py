"""Send the back-channel logout deliveries that are due: run it from cron (every minute is fine).

Picks up PENDING deliveries the in-process pool had no room for, FAILED ones whose backoff has
passed and SENDING ones whose worker died (lapsed lease). Each is claimed atomically, so this
command, the web processes' pools and a second copy of the command never send one twice.
"""

from concurrent.futures import ThreadPoolExecutor

from django.core.management.base import BaseCommand
from django.db import connections

from oidc_provider_ext.internal import backchannel
from oidc_provider_ext.models import BackchannelDelivery


def _attempt(pk: int, max_attempts: int) -> bool:
    try:
        return backchannel.attempt(pk, max_attempts=max_attempts)
    finally:
        connections.close_all()  # this worker thread's connections


class Command(BaseCommand):
    help = "Send due back-channel logout tokens (a fresh token each time), with backoff and a cap."

    def add_arguments(self, parser):
        parser.add_argument(
            "--max-attempts",
            type=int,
            default=backchannel.DEFAULT_MAX_ATTEMPTS,
            help="Give up on a delivery after this many attempts.",
        )
        parser.add_argument("--batch", type=int, default=100, help="Deliveries per batch.")
        parser.add_argument(
            "--workers",
            type=int,
            default=backchannel.WORKERS,
            help="Deliveries in parallel (each has the BACKCHANNEL_LOGOUT_TIMEOUT_SECONDS deadline).",
        )

    def handle(self, *args, max_attempts, batch, workers, **options):
        delivered = failed = 0
        last_pk = 0
        while True:
            # Rows due now, pk-ordered; a row that fails again is due later, so each runs once.
            chunk = list(
                backchannel.due(max_attempts)
                .filter(pk__gt=last_pk)
                .order_by("pk")
                .values_list("pk", flat=True)[:batch]
            )
            if not chunk:
                break
            last_pk = chunk[-1]
            if workers > 1:
                with ThreadPoolExecutor(max_workers=workers) as pool:
                    attempted = list(pool.map(lambda pk: _attempt(pk, max_attempts), chunk))
            else:
                attempted = [backchannel.attempt(pk, max_attempts=max_attempts) for pk in chunk]
            mine = [pk for pk, ours in zip(chunk, attempted, strict=True) if ours]
            outcomes = BackchannelDelivery.objects.filter(pk__in=mine)
            done = outcomes.filter(status=BackchannelDelivery.Status.DELIVERED).count()
            delivered += done
            failed += len(mine) - done
        backchannel.give_up_lost(max_attempts)
        given_up = BackchannelDelivery.objects.filter(
            status=BackchannelDelivery.Status.FAILED, attempts__gte=max_attempts
        ).count()
        self.stdout.write(f"Delivered {delivered}, still failing {failed}, given up {given_up}.")
