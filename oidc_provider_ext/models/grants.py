from django.conf import settings
from django.db import models
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from oauth2_provider.settings import oauth2_settings

from oidc_provider_ext.scopes import OFFLINE_ACCESS


class AuthorizationGrantQuerySet(models.QuerySet):
    def revoke_tokens(self, *, keep_offline_access: bool = False) -> None:
        """Revoke what these grants issued, at once: codes not yet redeemed die, every access token
        (the first, and each one a refresh rotated out) stops working, refresh-token families are
        revoked. ``keep_offline_access`` spares the refresh tokens of ``offline_access`` grants
        (OIDC Core 11: the end of a session does not end offline access) but not their access tokens.
        """
        now = timezone.now()
        # Expired as of their creation, not of now: a redemption racing this compares the row's
        # expiry with its own clock reading, which may be a moment older than ours.
        self.filter(redeemed__isnull=True, expires__gt=now).update(expires=models.F("created"))
        rows = list(
            self.exclude(redeemed__isnull=True).values_list("access_token_id", "token_family", "scope")
        )
        kept = {
            family
            for _access, family, scope in rows
            if family and keep_offline_access and OFFLINE_ACCESS in scope.split()
        }
        revoke_issued(
            {access for access, _family, _scope in rows if access},
            {family for _access, family, _scope in rows if family},
            keep_refresh_of=kept,
        )


def revoke_issued(access_token_ids, families, keep_refresh_of=frozenset()) -> None:
    """Revoke access tokens by id and refresh-token families with every access token rotated from
    them. A family in ``keep_refresh_of`` keeps its refresh tokens; its access tokens are expired
    rather than deleted, so the refresh token still has the access token it is bound to (an orphan
    is refused at refresh)."""
    from oauth2_provider.models import get_access_token_model, get_refresh_token_model

    families = {family for family in families if family}
    for family in families - set(keep_refresh_of):
        get_refresh_token_model().revoke_family(family)  # deletes the family's access tokens too
    now = timezone.now()
    get_access_token_model().objects.filter(
        models.Q(pk__in=[pk for pk in access_token_ids if pk])
        | models.Q(source_refresh_token__token_family__in=families),
        expires__gt=now,
    ).update(expires=now)


class AuthorizationGrant(models.Model):
    """What a user granted a client in one authorization request; the root of every token issued
    from its code, including every refresh.

    It replaces DOT's ``Grant``: only the SHA-256 of the code is stored (a database leak hands out
    no live code), single use is one conditional UPDATE on ``redeemed`` (atomic on SQLite and
    PostgreSQL), and the row outlives its code so that a replay can revoke what the code issued
    (RFC 6749 4.1.2) and a refresh keeps the original ``auth_time``, ``acr`` and ``sid``
    (OIDC Core 12.2).
    """

    id = models.BigAutoField(primary_key=True)
    code_checksum = models.CharField(_("code checksum"), max_length=64, unique=True)
    application = models.ForeignKey(
        oauth2_settings.APPLICATION_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    op_session = models.ForeignKey(
        "oidc_provider_ext.OPSession", on_delete=models.SET_NULL, null=True, blank=True, related_name="grants"
    )
    redirect_uri = models.TextField(_("redirect URI"))
    scope = models.TextField(_("scope"), blank=True)
    code_challenge = models.CharField(_("PKCE code challenge"), max_length=128, blank=True)
    code_challenge_method = models.CharField(_("PKCE method"), max_length=10, blank=True)
    nonce = models.CharField(_("nonce"), max_length=255, blank=True)
    claims = models.JSONField(_("requested claims"), default=dict, blank=True)
    # RFC 8707 2.1: the resource indicators of the authorization request, exactly as sent; the
    # token requests of this grant may name any of them, never another (2.2).
    resource = models.JSONField(_("resource indicators"), default=list, blank=True)
    # Copied from the OP session when the code is issued, so every token derived from this grant
    # reports the original authentication even after the session ends (OIDC Core 12.2).
    auth_time = models.DateTimeField(_("authenticated at"))
    acr = models.CharField(_("authentication context class"), max_length=255, blank=True)
    amr = models.JSONField(_("authentication methods"), default=list, blank=True)
    sid = models.CharField(_("session ID"), max_length=64, blank=True)
    tenant = models.CharField(_("tenant"), max_length=64, blank=True)
    expires = models.DateTimeField(_("code expires"))
    created = models.DateTimeField(_("created"), auto_now_add=True)
    redeemed = models.DateTimeField(_("redeemed"), null=True, blank=True)
    reuse_detected = models.BooleanField(_("code replay detected"), default=False)
    access_token = models.ForeignKey(
        oauth2_settings.ACCESS_TOKEN_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    token_family = models.UUIDField(_("refresh token family"), null=True, blank=True, db_index=True)

    objects = AuthorizationGrantQuerySet.as_manager()

    class Meta:
        verbose_name = _("authorization grant")
        verbose_name_plural = _("authorization grants")

    def __str__(self) -> str:
        return f"grant {self.pk} to {self.application_id}"

    @property
    def scopes(self) -> list[str]:
        return self.scope.split()


def with_grant(access_tokens: models.QuerySet, *fields: str) -> models.QuerySet:
    """``access_tokens`` annotated with ``grant_pk`` and ``grant_<field>`` for each of ``fields``
    of each token's grant (``grant_pk`` None: it has none): the grant of the token itself (code
    exchange), else of the refresh-token family it was rotated from. One statement instead of the
    token's and then its grant's, on userinfo, introspection and a resource server's revocation
    check. The ORM's form of :func:`grant_extras` (databases the lookups do not cover)."""
    grants = AuthorizationGrant.objects.order_by()
    by_token = grants.filter(access_token_id=models.OuterRef("pk")).values("pk")[:1]
    by_family = grants.filter(token_family=models.OuterRef("source_refresh_token__token_family"))
    pk = Coalesce(models.Subquery(by_token), models.Subquery(by_family.values("pk")[:1]))
    return access_tokens.annotate(grant_pk=pk).annotate(
        **{
            f"grant_{name}": models.Subquery(grants.filter(pk=models.OuterRef("grant_pk")).values(name)[:1])
            for name in fields
        }
    )


def grant_extras(access_token_model: type[models.Model], *fields: str) -> list:
    """:func:`with_grant` for an :class:`~oidc_provider_ext.internal.lookups.Lookup` of access
    tokens: ``grant_pk`` and ``grant_<field>`` of the token's grant, read from two joins of the
    grants table, each on its own index: by ``access_token`` (the token of a code exchange), else,
    through the refresh token it was rotated from, by ``token_family``. The key is found once for
    every column (one probe each, three for a rotated token).

    One ``access_token = … OR token_family = …`` condition made PostgreSQL read the whole table
    whenever its plan was made with a small table's statistics (a prepared statement keeps that
    plan): 1,000+ rows per userinfo call in the benchmark. A correlated subquery per column then
    found the key again for each column: 12 index probes per call instead of 3.
    """
    from oauth2_provider.models import get_refresh_token_model

    from oidc_provider_ext.internal.lookups import Extra, column_field

    grant_meta = AuthorizationGrant._meta
    refresh_model = get_refresh_token_model()
    refresh_meta = refresh_model._meta
    source = column_field(access_token_model, "source_refresh_token")

    def joins(q, outer: str) -> str:
        grants, pk = q(grant_meta.db_table), q(grant_meta.pk.column)
        family = q(column_field(refresh_model, "token_family").column)
        return (
            f"LEFT OUTER JOIN {grants} {_BY_TOKEN} "
            f"ON {_BY_TOKEN}.{q(column_field(AuthorizationGrant, 'access_token').column)} = "
            f"{outer}.{q(access_token_model._meta.pk.column)} "
            # the refresh token (and the family's grant) only for a token no grant names
            f"LEFT OUTER JOIN {q(refresh_meta.db_table)} {_SOURCE} "
            f"ON {_BY_TOKEN}.{pk} IS NULL "
            f"AND {_SOURCE}.{q(refresh_meta.pk.column)} = {outer}.{q(source.column)} "
            f"LEFT OUTER JOIN {grants} {_BY_FAMILY} "
            f"ON {_BY_FAMILY}.{q(column_field(AuthorizationGrant, 'token_family').column)} "
            f"= {_SOURCE}.{family}"
        )

    def column_sql(field: models.Field):
        def sql(q, outer: str) -> str:
            found, column = f"{_BY_TOKEN}.{q(grant_meta.pk.column)} IS NOT NULL", q(field.column)
            return f"CASE WHEN {found} THEN {_BY_TOKEN}.{column} ELSE {_BY_FAMILY}.{column} END"

        return sql

    return [
        Extra("grant_pk", column_sql(grant_meta.pk), output_field=grant_meta.pk, joins=joins),
        *(
            Extra(f"grant_{name}", column_sql(field), output_field=field, joins=joins)
            for name, field in ((name, column_field(AuthorizationGrant, name)) for name in fields)
        ),
    ]


#: The aliases of grant_extras' joins.
_BY_TOKEN, _SOURCE, _BY_FAMILY = "grant_by_token", "grant_source", "grant_by_family"


def grant_tenant_member_extra(access_token_model: type[models.Model]):
    """``grant_tenant_member``: whether the token's user is an active member of its grant's
    tenant, active too: the default ``adapter.is_member_of`` query (its ``member_hint``), asked in
    the token's own statement. False for a grant without a tenant (the rule is not asked then)."""
    from oidc_provider_ext.internal.lookups import TENANT_MEMBER, Extra, column_field

    tenant = grant_extras(access_token_model, "tenant")[1]
    user_column = column_field(access_token_model, "user").column

    def sql(q, outer: str) -> str:
        return tenant_member_sql(q, f"{outer}.{q(user_column)}", f"({tenant.sql(q, outer)})")

    return Extra(TENANT_MEMBER, sql, joins=tenant.joins)


def tenant_member_sql(q, user_sql: str, code_sql: str) -> str:
    """The default ``adapter.is_member_of`` query as one SQL condition: the user ``user_sql`` (an
    SQL expression of its pk) is an active member of the active tenant whose code is ``code_sql``.
    ``q`` quotes a name (``connection.ops.quote_name``)."""
    from oidc_provider_ext.internal.lookups import column_field
    from oidc_provider_ext.models import Tenant, TenantMembership

    membership, tenant = TenantMembership._meta, Tenant._meta
    return (
        f"EXISTS (SELECT 1 FROM {q(membership.db_table)} m "
        f"INNER JOIN {q(tenant.db_table)} tt "
        f"ON m.{q(column_field(TenantMembership, 'tenant').column)} = tt.{q(tenant.pk.column)} "
        f"WHERE m.{q(column_field(TenantMembership, 'user').column)} = {user_sql} "
        f"AND m.{q(column_field(TenantMembership, 'is_active').column)} "
        f"AND tt.{q(column_field(Tenant, 'is_active').column)} "
        f"AND tt.{q(column_field(Tenant, 'code').column)} = {code_sql})"
    )
