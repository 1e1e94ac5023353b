from .clients import ClientProfile
from .consents import Consent
from .grants import AuthorizationGrant
from .keys import SigningKey
from .sessions import OPSession
from .tenants import Tenant, TenantMembership

__all__ = [
    "AuthorizationGrant",
    "ClientProfile",
    "Consent",
    "OPSession",
    "SigningKey",
    "Tenant",
    "TenantMembership",
]
