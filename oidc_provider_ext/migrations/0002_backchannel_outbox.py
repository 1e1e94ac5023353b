"""Back-channel logout deliveries become a durable outbox: a SENDING state with a lease, and the time
each row is next due (retries with exponential backoff)."""

import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("oidc_provider_ext", "0001_initial"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="backchanneldelivery", name="oidc_delivery_retry"),
        migrations.AddField(
            model_name="backchanneldelivery",
            name="next_attempt",
            field=models.DateTimeField(default=django.utils.timezone.now, verbose_name="next attempt"),
        ),
        migrations.AlterField(
            model_name="backchanneldelivery",
            name="status",
            field=models.CharField(
                choices=[
                    ("pending", "pending"),
                    ("sending", "sending"),
                    ("delivered", "delivered"),
                    ("failed", "failed"),
                ],
                default="pending",
                max_length=10,
                verbose_name="status",
            ),
        ),
        migrations.AddIndex(
            model_name="backchanneldelivery",
            index=models.Index(fields=["status", "next_attempt"], name="oidc_delivery_due"),
        ),
    ]
