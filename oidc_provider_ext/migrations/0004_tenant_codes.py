"""Client profiles name tenants by code (the adapter decides what a code means), not by keys into
the built-in Tenant table: copy the allowed and default tenants to code fields, then drop the
relations."""

from django.db import migrations, models


def copy_codes(apps, schema_editor):
    ClientProfile = apps.get_model("oidc_provider_ext", "ClientProfile")
    for profile in ClientProfile.objects.prefetch_related("allowed_tenants").select_related("default_tenant"):
        codes = sorted({tenant.code.lower() for tenant in profile.allowed_tenants.all()})
        default = profile.default_tenant.code.lower() if profile.default_tenant is not None else ""
        if codes or default:
            ClientProfile.objects.filter(pk=profile.pk).update(
                allowed_tenant_codes=" ".join(codes), default_tenant_code=default
            )


def copy_back(apps, schema_editor):
    ClientProfile = apps.get_model("oidc_provider_ext", "ClientProfile")
    Tenant = apps.get_model("oidc_provider_ext", "Tenant")
    for profile in ClientProfile.objects.exclude(allowed_tenant_codes="", default_tenant_code=""):
        codes = profile.allowed_tenant_codes.lower().split()
        profile.allowed_tenants.set(Tenant.objects.filter(code__in=codes))
        if profile.default_tenant_code:
            profile.default_tenant = Tenant.objects.filter(code=profile.default_tenant_code.lower()).first()
            profile.save(update_fields=["default_tenant"])


class Migration(migrations.Migration):
    dependencies = [
        ("oidc_provider_ext", "0003_opsession_expiry_no_session_key"),
    ]

    operations = [
        migrations.AddField(
            model_name="clientprofile",
            name="allowed_tenant_codes",
            field=models.TextField(
                blank=True,
                help_text=(
                    "Space-separated codes of the organisations users of this client may sign in to. "
                    "Empty: any active one."
                ),
                verbose_name="allowed tenants",
            ),
        ),
        migrations.AddField(
            model_name="clientprofile",
            name="default_tenant_code",
            field=models.CharField(
                blank=True,
                help_text="Code of the organisation used when a request names none (acr_values=tenant:<code>).",
                max_length=64,
                verbose_name="default tenant",
            ),
        ),
        migrations.RunPython(copy_codes, copy_back),
        migrations.RemoveField(model_name="clientprofile", name="allowed_tenants"),
        migrations.RemoveField(model_name="clientprofile", name="default_tenant"),
    ]
