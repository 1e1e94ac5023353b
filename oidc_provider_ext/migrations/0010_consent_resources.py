"""Consent per API (RFC 8707, review 1 F1): ``Consent.resource`` becomes {identifier: [scopes]}.

An existing row kept one pooled set of scopes and a list of APIs; which scope was allowed for which
API is not recorded, so it cannot be split honestly. Its scopes stay allowed for requests that name
no API ("") and the APIs are asked again once (fail closed: the user sees the consent page, nothing
is granted that the user may have refused).
"""

from django.db import migrations, models


def per_resource(apps, schema_editor):
    Consent = apps.get_model("oidc_provider_ext", "Consent")
    for consent in Consent.objects.only("pk", "scope", "resource").iterator():
        if isinstance(consent.resource, dict):
            continue
        consent.resource = {"": sorted(set(consent.scope.split()))}
        consent.save(update_fields=["resource"])


def pooled(apps, schema_editor):
    Consent = apps.get_model("oidc_provider_ext", "Consent")
    for consent in Consent.objects.only("pk", "resource").iterator():
        if isinstance(consent.resource, dict):
            consent.resource = [key for key in consent.resource if key]
            consent.save(update_fields=["resource"])


class Migration(migrations.Migration):
    dependencies = [
        ("oidc_provider_ext", "0009_client_registration"),
    ]

    operations = [
        migrations.AlterField(
            model_name="consent",
            name="resource",
            field=models.JSONField(blank=True, default=dict, verbose_name="scopes per resource"),
        ),
        migrations.RunPython(per_resource, pooled),
    ]
