"""Device authorization grant (RFC 8628): the ClientProfile flag and the DeviceAuthorization model."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models
from oauth2_provider.settings import oauth2_settings


class Migration(migrations.Migration):
    dependencies = [
        ("oidc_provider_ext", "0006_passkeys"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        migrations.swappable_dependency(oauth2_settings.APPLICATION_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="clientprofile",
            name="allow_device_flow",
            field=models.BooleanField(
                default=False,
                help_text="The client may use the device authorization grant (RFC 8628): a CLI or TV shows a code the user enters at /connect/device. Needs the authorization code grant type.",
                verbose_name="allow device sign-in",
            ),
        ),
        migrations.CreateModel(
            name="DeviceAuthorization",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                (
                    "device_code_checksum",
                    models.CharField(max_length=64, unique=True, verbose_name="device code checksum"),
                ),
                (
                    "user_code_hmac",
                    models.CharField(max_length=64, unique=True, verbose_name="user code HMAC"),
                ),
                ("scope", models.TextField(blank=True, verbose_name="scope")),
                ("tenant", models.CharField(blank=True, max_length=64, verbose_name="tenant")),
                (
                    "tenant_deferred",
                    models.BooleanField(default=False, verbose_name="tenant chosen at sign-in"),
                ),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("pending", "Waiting for the user"),
                            ("approved", "Approved"),
                            ("denied", "Denied"),
                        ],
                        default="pending",
                        max_length=8,
                        verbose_name="status",
                    ),
                ),
                ("interval", models.PositiveIntegerField(verbose_name="polling interval (seconds)")),
                ("last_polled", models.DateTimeField(blank=True, null=True, verbose_name="last polled")),
                ("created", models.DateTimeField(auto_now_add=True, verbose_name="created")),
                ("expires", models.DateTimeField(db_index=True, verbose_name="expires")),
                (
                    "application",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to=oauth2_settings.APPLICATION_MODEL,
                        verbose_name="client",
                    ),
                ),
                (
                    "grant",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="oidc_provider_ext.authorizationgrant",
                        verbose_name="authorization grant",
                    ),
                ),
                (
                    "user",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "verbose_name": "device authorization",
                "verbose_name_plural": "device authorizations",
                "indexes": [
                    models.Index(fields=["application", "status", "expires"], name="oidc_device_pending")
                ],
            },
        ),
    ]
