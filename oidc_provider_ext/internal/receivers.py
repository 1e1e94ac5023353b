"""Account-state changes end what was given (DESIGN.md, "Account state").

Deactivating a user, ending (or deleting) a tenant membership and disabling a tenant end the OP
sessions concerned and revoke every grant's tokens, offline access included
(``op_sessions.end_access``). Every path that honours a token also asks ``adapter.may_use_client``, so
even a change made without signals (a queryset ``update()``, another organisation model) is honoured
at the next refresh, userinfo or introspection call; these receivers make it immediate.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db.models.signals import post_delete, post_save, pre_delete

from oidc_provider_ext.internal.op_sessions import end_access
from oidc_provider_ext.models import Tenant, TenantMembership


def _user_saved(sender, instance, created, **kwargs):
    if not created and not getattr(instance, "is_active", True):
        end_access(user=instance)


def _user_deleting(sender, instance, **kwargs):
    # Before the cascade deletes their OP sessions: end them, so the clients are told (the
    # deliveries keep sub and sid and outlive the rows they came from).
    end_access(user=instance)


def _membership_saved(sender, instance, created, **kwargs):
    if not instance.is_active:
        end_access(user=instance.user_id, tenant=instance.tenant.code)


def _membership_deleted(sender, instance, origin=None, **kwargs):
    # Deleting the user deletes their sessions and grants anyway (cascade); ending them here would
    # add rows (back-channel deliveries) under the objects being deleted.
    if not isinstance(origin, get_user_model()):
        end_access(user=instance.user_id, tenant=instance.tenant.code)


def _tenant_saved(sender, instance, created, **kwargs):
    if not created and not instance.is_active:
        end_access(tenant=instance.code)


def _tenant_deleted(sender, instance, **kwargs):
    end_access(tenant=instance.code)


def connect() -> None:
    post_save.connect(_user_saved, sender=get_user_model(), dispatch_uid="oidc_provider_ext.user_saved")
    pre_delete.connect(
        _user_deleting, sender=get_user_model(), dispatch_uid="oidc_provider_ext.user_deleting"
    )
    post_save.connect(
        _membership_saved, sender=TenantMembership, dispatch_uid="oidc_provider_ext.membership_saved"
    )
    post_delete.connect(
        _membership_deleted, sender=TenantMembership, dispatch_uid="oidc_provider_ext.membership_deleted"
    )
    post_save.connect(_tenant_saved, sender=Tenant, dispatch_uid="oidc_provider_ext.tenant_saved")
    post_delete.connect(_tenant_deleted, sender=Tenant, dispatch_uid="oidc_provider_ext.tenant_deleted")
