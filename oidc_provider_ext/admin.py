import logging

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.db import models
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from oauth2_provider.admin import ApplicationAdmin
from oauth2_provider.forms import ApplicationForm
from oauth2_provider.models import get_application_model

from .internal import consents, cors, factors, resources
from .internal import passkeys as passkey_service
from .internal.clients import is_hashed
from .models import (
    AuthorizationGrant,
    BackchannelDelivery,
    ClientProfile,
    Consent,
    DeviceAuthorization,
    InitialAccessToken,
    OPSession,
    Passkey,
    RecoveryCode,
    ResourceServer,
    SigningKey,
    Tenant,
    TenantMembership,
    TOTPDevice,
)
from .server import CLIENT_GRANT_TYPES

Application = get_application_model()


def registration_policy_text() -> str:
    """The self-registration settings in one line (REGISTRATION, CLIENT_ID_METADATA_DOCUMENTS)."""
    from .conf import app_settings

    policy = {
        "off": "off",
        "initial_access_token": "with an initial access token",
        "open": "open to anyone, within limits",
    }[app_settings.REGISTRATION]
    documents = "accepted" if app_settings.CLIENT_ID_METADATA_DOCUMENTS else "not accepted"
    return f"Dynamic client registration: {policy}. Client ID metadata documents: {documents}."


class ClientProfileInline(admin.StackedInline):
    model = ClientProfile
    can_delete = False
    # How a self-registered client came (docs/registration.md); never its registration token.
    readonly_fields = ("registered_from", "registration_policy", "registration_metadata")
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    extra = 1
    max_num = 1


class ClientForm(ApplicationForm):
    def clean_client_id(self):
        value = self.cleaned_data.get("client_id", "")
        if resources.is_identifier_of_a_resource_server(value):
            raise forms.ValidationError(resources.CLIENT_ID_IS_A_RESOURCE)
        return value

    def clean_allowed_origins(self):
        # An origin internal/cors.py would ignore is refused here, so what is saved is what works.
        value = self.cleaned_data.get("allowed_origins", "")
        refused = [origin for origin in value.split() if cors.serialise(origin) is None]
        if refused:
            raise forms.ValidationError(
                "Not an origin CORS is served to: %(origins)s. Write scheme://host[:port] with no path; "
                "http only for local development (http://localhost:PORT, http://127.0.0.1:PORT, "
                "http://[::1]:PORT).",
                params={"origins": ", ".join(refused)},
            )
        return value


class ClientAdmin(ApplicationAdmin):
    """DOT's application admin, plus the OIDC profile and a secret that is shown exactly once."""

    form = ClientForm
    inlines = [*ApplicationAdmin.inlines, ClientProfileInline]
    # DOT's per-application algorithm names a key in DOT's settings; ID tokens here are signed
    # by the database key store (oidc_provider_ext.keys), so the field would only mislead.
    # skip_authorization is replaced by the OIDC profile's consent policy (one way to do it).
    exclude = ("algorithm", "skip_authorization")
    list_filter = (
        "client_type",
        "authorization_grant_type",
        "registration_source",
        "oidc_profile__consent_policy",
    )
    list_display = ("pk", "name", "client_id", "client_type", "authorization_grant_type", "registration")

    def changelist_view(self, request, extra_context=None):
        # The operator sees which clients may register themselves (docs/registration.md).
        return super().changelist_view(
            request, {"subtitle": registration_policy_text(), **(extra_context or {})}
        )

    @admin.display(description="registration", ordering="registration_source")
    def registration(self, obj):
        if obj.registration_source == Application.RegistrationSource.MANUAL:
            return "operator"
        # A self-registered client: nobody reviewed it (its users are always asked for consent).
        return format_html(
            '<strong class="oidc-self-registered" title="{}">self-registered ({})</strong>',
            "Registered by the client itself; not reviewed by an operator.",
            obj.get_registration_source_display(),
        )

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        if obj is not None:
            # Stored hashed: editing it would only show a hash. Create a new client to re-issue.
            readonly += ["client_secret", "hash_client_secret"]
        return readonly

    def formfield_for_choice_field(self, db_field, request, **kwargs):
        if db_field.name == "authorization_grant_type":
            # Only the grants this provider's server has (server.CLIENT_GRANT_TYPES); a choice
            # that is not offered is also refused on POST (ChoiceField validation).
            kwargs["choices"] = [
                (value, label) for value, label in db_field.choices if value in CLIENT_GRANT_TYPES
            ]
            kwargs["help_text"] = (
                "Authorization code for clients acting for a signed-in user (the refresh grant comes "
                "with it); client credentials for a server acting for itself. DOT's implicit, password "
                "and hybrid grants are not offered: this provider does not serve them (RFC 9700 2.1.2 "
                "and 2.4), so such a client would only ever get unsupported_grant_type. For sign-in "
                "with a code on another device (RFC 8628), choose authorization code and tick "
                "“allow device sign-in” in the OIDC profile below."
            )
        return super().formfield_for_choice_field(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        raw_secret = obj.client_secret
        super().save_model(request, obj, form, change)
        if not change and raw_secret and obj.hash_client_secret and not is_hashed(raw_secret):
            # Kept on this request only, for response_add's page: never in a message (Django's
            # default message storage is a cookie), the session (a cookie with signed_cookies) or
            # any table; the database holds only its hash.
            request._oidc_new_client_secret = raw_secret

    def response_add(self, request, obj, post_url_continue=None):
        raw_secret = getattr(request, "_oidc_new_client_secret", None)
        if raw_secret is None:
            return super().response_add(request, obj, post_url_continue)
        # The secret is shown once, in the body of the response to the save, instead of the usual
        # redirect: nothing to store in between. Reloading re-posts the form, which is refused as a
        # duplicate client_id; it never shows the secret again.
        opts = self.opts
        response = TemplateResponse(
            request,
            "admin/oidc_provider_ext/client_secret.html",
            {
                **self.admin_site.each_context(request),
                "opts": opts,
                "title": f"Client secret for {obj}",
                "client": obj,
                "client_secret": raw_secret,
            },
        )
        add_never_cache_headers(response)  # no-store: not in the browser's or a proxy's cache
        return response


if admin.site.is_registered(Application):
    admin.site.unregister(Application)
admin.site.register(Application, ClientAdmin)


@admin.register(SigningKey)
class SigningKeyAdmin(admin.ModelAdmin):
    list_display = ("kid", "alg", "state", "created", "activated", "retired")
    list_filter = ("alg", "state")
    readonly_fields = ("kid", "alg", "public_jwk", "created", "activated", "retired")
    fields = ("kid", "alg", "state", "public_jwk", "created", "activated", "retired")

    def has_add_permission(self, request):
        return False  # keys are generated by `manage.py oidc_keys`, never typed in


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records the provider writes; operators look, they do not type them in."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_operate_permission(self, request) -> bool:
        """For actions on the records (revoke, retry): the model's change permission, which the
        read-only forms do not use (a view-only operator may look, not act)."""
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")


@admin.register(AuthorizationGrant)
class AuthorizationGrantAdmin(ReadOnlyAdmin):
    list_display = ("id", "application", "user", "scope", "created", "redeemed", "reuse_detected")
    list_filter = ("reuse_detected",)
    raw_id_fields = ("user", "application", "op_session", "access_token")
    exclude = ("code_checksum",)


@admin.register(DeviceAuthorization)
class DeviceAuthorizationAdmin(ReadOnlyAdmin):
    list_display = ("id", "application", "status", "user", "tenant", "created", "expires")
    list_filter = ("status",)
    raw_id_fields = ("user", "application", "grant")
    # Hashes of bearer codes: nothing a device code or user code can be found from is shown.
    exclude = ("device_code_checksum", "user_code_hmac")


class BackchannelDeliveryInline(admin.TabularInline):
    model = BackchannelDelivery
    extra = 0
    can_delete = False
    fields = ("application", "uri", "status", "attempts", "last_attempt", "last_error")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(OPSession)
class OPSessionAdmin(ReadOnlyAdmin):
    list_display = ("sid", "user", "tenant", "auth_time", "acr", "user_agent", "ended")
    list_filter = (("ended", admin.EmptyFieldListFilter), "tenant")
    search_fields = ("sid", "user__username")
    raw_id_fields = ("user",)
    readonly_fields = ("clients",)
    inlines = [BackchannelDeliveryInline]

    @admin.display(description="clients that received tokens")
    def clients(self, obj):
        grants = AuthorizationGrant.objects.filter(op_session=obj, redeemed__isnull=False)
        return (
            ", ".join(sorted({str(grant.application) for grant in grants.select_related("application")}))
            or "—"
        )


@admin.register(Passkey)
class PasskeyAdmin(ReadOnlyAdmin):
    """Listed read-only. Deleting one (delete permission) also ends the user's sign-ins that
    relied on a passkey, as when the user removes it."""

    list_display = ("name", "user", "backup_eligible", "backed_up", "created", "last_used")
    list_filter = ("backup_eligible",)
    search_fields = ("name", "user__username")
    raw_id_fields = ("user",)
    exclude = ("public_key",)

    def delete_model(self, request, obj):
        passkey_service.delete_passkeys(Passkey.objects.filter(pk=obj.pk))

    def delete_queryset(self, request, queryset):
        passkey_service.delete_passkeys(queryset)


@admin.register(BackchannelDelivery)
class BackchannelDeliveryAdmin(ReadOnlyAdmin):
    list_display = ("op_session", "application", "uri", "status", "attempts", "last_attempt", "next_attempt")
    list_filter = ("status",)
    search_fields = ("uri", "op_session__sid")
    readonly_fields = (
        "op_session",
        "application",
        "uri",
        "status",
        "attempts",
        "last_attempt",
        "next_attempt",
        "last_error",
        "created",
    )
    actions = ["retry"]

    @admin.action(description="Send the logout token again", permissions=["operate"])
    def retry(self, request, queryset):
        from .internal import backchannel

        # Due now, for the worker pool (no attempt cap: the operator asked). The admin's request
        # does not wait for the relying parties; a row another worker holds is left to it.
        again = queryset.exclude(
            status__in=[BackchannelDelivery.Status.DELIVERED, BackchannelDelivery.Status.SENDING]
        )
        pks = list(again.values_list("pk", flat=True))
        BackchannelDelivery.objects.filter(pk__in=pks).update(next_attempt=timezone.now())
        backchannel.record(list(BackchannelDelivery.objects.filter(pk__in=pks).only("pk")))
        self.message_user(
            request,
            f"Queued {len(pks)} deliveries; their status shows the outcome in a few seconds.",
            messages.INFO,
        )


@admin.register(Consent)
class ConsentAdmin(ReadOnlyAdmin):
    list_display = ("user", "application", "tenant", "scope", "granted", "last_used", "expires", "revoked")
    list_filter = (("revoked", admin.EmptyFieldListFilter), "tenant")
    search_fields = ("user__username", "user__email", "application__name", "application__client_id")
    raw_id_fields = ("user", "application")
    actions = ["revoke_consents"]

    @admin.action(
        description="Revoke selected consents and the tokens issued under them", permissions=["operate"]
    )
    def revoke_consents(self, request, queryset):
        live = list(queryset.filter(revoked__isnull=True))
        for consent in live:
            consents.revoke(consent)
        self.message_user(request, f"Revoked {len(live)} consent(s).", messages.SUCCESS)


class TenantMembershipInline(admin.TabularInline):
    model = TenantMembership
    extra = 0
    raw_id_fields = ("user",)


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "is_active", "created")
    list_filter = ("is_active",)
    search_fields = ("code", "name")
    # Django 6 assumes https for scheme-less URLs; say so now (and silence the 5.x warning).
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    fieldsets = [
        (None, {"fields": ("code", "name", "is_active")}),
        ("Branding", {"fields": ("logo_url", "brand_colour", "support_url")}),
        ("Sign-in", {"fields": ("minimum_acr",)}),
    ]
    inlines = [TenantMembershipInline]


@admin.register(TenantMembership)
class TenantMembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "tenant", "is_active", "created")
    list_filter = ("is_active", "tenant")
    search_fields = ("user__username", "user__email", "tenant__code", "tenant__name")
    raw_id_fields = ("user",)


@admin.register(ResourceServer)
class ResourceServerAdmin(admin.ModelAdmin):
    """APIs that accept this provider's access tokens (RFC 8707 resource indicators)."""

    list_display = ("identifier", "name", "scopes", "any_client", "tenant_codes", "enabled", "created")
    list_filter = ("enabled", "any_client")
    search_fields = ("identifier", "name", "scopes", "tenant_codes")
    filter_horizontal = ("allowed_clients",)
    fields = (
        "identifier",
        "name",
        "scopes",
        "access_token_lifetime",
        "any_client",
        "allowed_clients",
        "tenant_codes",
        "enabled",
    )


# --- second factors ------------------------------------------------------------------------------

log = logging.getLogger(__name__)


def _may_change_users(request) -> bool:
    user_model = get_user_model()
    return request.user.has_perm(f"{user_model._meta.app_label}.change_{user_model._meta.model_name}")


def _reset_factors_of(modeladmin, request, users) -> None:
    # Looking at a list is not changing accounts: a change permission on the user model, and a
    # superuser's factors only by a superuser (docs/security.md "an insider with partial access").
    if not _may_change_users(request):
        modeladmin.message_user(
            request, _("Resetting second factors needs permission to change users."), messages.ERROR
        )
        return
    refused = [user for user in users if user.is_superuser and not request.user.is_superuser]
    if refused:
        modeladmin.message_user(
            request, _("Only a superuser may reset the second factors of a superuser."), messages.ERROR
        )
        users = [user for user in users if user not in refused]
    for user in users:
        factors.reset_factors(user)
        modeladmin.log_change(
            request, user, "Second factors reset (authenticator app, recovery codes, passkeys)."
        )
        log.warning("Operator %s reset the second factors of user %s.", request.user.pk, user.pk)
    if not users:
        return
    modeladmin.message_user(
        request,
        ngettext(
            "The second factors of %(count)d user were reset; they sign in with their password only now.",
            "The second factors of %(count)d users were reset; they sign in with their password only now.",
            len(users),
        )
        % {"count": len(users)},
        messages.SUCCESS,
    )


@admin.action(
    description=_("Reset second factors (authenticator app, recovery codes, passkeys)"),
    permissions=["change"],
)
def reset_second_factors(modeladmin, request, queryset):
    """An admin action for the site's user admin (``actions = [reset_second_factors]``): removes
    every second factor of the selected users and ends the sessions that relied on one. Offered to
    operators who may change users; a superuser's factors only to a superuser. Audited: a LogEntry
    on the user and a log line. The same action on the authenticator-app list below."""
    _reset_factors_of(modeladmin, request, list(queryset))


class _FactorListAdmin(ReadOnlyAdmin):
    """A list of second factors (read-only) with the reset action for operators who may change users."""

    actions = ["reset_second_factors"]

    def has_reset_factors_permission(self, request) -> bool:
        return _may_change_users(request)

    @admin.action(
        description=_("Reset second factors (authenticator app, recovery codes, passkeys)"),
        permissions=["reset_factors"],
    )
    def reset_second_factors(self, request, queryset):
        _reset_factors_of(self, request, list({row.user for row in queryset.select_related("user")}))


@admin.register(TOTPDevice)
class TOTPDeviceAdmin(_FactorListAdmin):
    """Who has an authenticator app: never its key (encrypted, and not shown)."""

    list_display = ("user", "confirmed", "last_used", "created")
    search_fields = ("user__username", "user__email")
    fields = ("user", "confirmed", "last_used", "created")
    readonly_fields = fields


@admin.register(RecoveryCode)
class RecoveryCodeAdmin(_FactorListAdmin):
    list_display = ("user", "used", "created")
    search_fields = ("user__username", "user__email")
    fields = ("user", "used", "created")
    readonly_fields = fields


class InitialAccessTokenForm(forms.ModelForm):
    class Meta:
        model = InitialAccessToken
        fields = ("description", "expires", "max_uses")


@admin.register(InitialAccessToken)
class InitialAccessTokenAdmin(admin.ModelAdmin):
    """RFC 7591 3 initial access tokens (REGISTRATION = "initial_access_token"): created here or
    with ``manage.py oidc_registration_token``; the token is shown once and stored hashed."""

    form = InitialAccessTokenForm
    list_display = ("__str__", "created", "expires", "uses", "max_uses", "revoked")
    list_filter = (("revoked", admin.EmptyFieldListFilter),)
    readonly_fields = ("uses", "created")
    actions = ["revoke"]

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(
            request, {"subtitle": registration_policy_text(), **(extra_context or {})}
        )

    def get_readonly_fields(self, request, obj=None):
        return (*self.readonly_fields, "expires", "max_uses") if obj is not None else ()

    def save_model(self, request, obj, form, change):
        if not change:
            from .internal import registration

            token = registration.new_token()
            obj.token_hash = registration.token_hash(token, registration.INITIAL_ACCESS_TOKEN)
            request._oidc_new_initial_access_token = token  # this response only (see ClientAdmin)
        super().save_model(request, obj, form, change)

    def response_add(self, request, obj, post_url_continue=None):
        token = getattr(request, "_oidc_new_initial_access_token", None)
        if token is None:
            return super().response_add(request, obj, post_url_continue)
        response = TemplateResponse(
            request,
            "admin/oidc_provider_ext/initial_access_token.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": str(obj),
                "token": token,
                "obj": obj,
            },
        )
        add_never_cache_headers(response)
        return response

    @admin.action(description="Revoke selected initial access tokens", permissions=["change"])
    def revoke(self, request, queryset):
        count = queryset.filter(revoked__isnull=True).update(revoked=timezone.now())
        self.message_user(request, f"Revoked {count} initial access token(s).", messages.SUCCESS)
