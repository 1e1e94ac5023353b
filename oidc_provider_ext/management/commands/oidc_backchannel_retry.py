"""Retry back-channel logout deliveries that failed (e.g. the client was down). Cron-friendly."""

from django.core.management.base import BaseCommand

from oidc_provider_ext.logout import deliver
from oidc_provider_ext.models import BackchannelDelivery


class Command(BaseCommand):
    help = "Send failed back-channel logout tokens again (a fresh token each time)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--max-attempts", type=int, default=10, help="Give up on a delivery after this many."
        )
        parser.add_argument("--batch", type=int, default=100, help="Deliveries per batch.")

    def handle(self, *args, max_attempts, batch, **options):
        pending = BackchannelDelivery.objects.filter(
            status__in=[BackchannelDelivery.Status.FAILED, BackchannelDelivery.Status.PENDING],
            attempts__lt=max_attempts,
        ).order_by("pk")
        delivered = failed = 0
        last_pk = 0
        while True:
            chunk = list(pending.filter(pk__gt=last_pk)[:batch])
            if not chunk:
                break
            deliver(chunk)
            last_pk = chunk[-1].pk
            outcomes = BackchannelDelivery.objects.filter(pk__in=[d.pk for d in chunk])
            delivered += outcomes.filter(status=BackchannelDelivery.Status.DELIVERED).count()
            failed += outcomes.exclude(status=BackchannelDelivery.Status.DELIVERED).count()
        self.stdout.write(f"Delivered {delivered}, still failing {failed}.")
