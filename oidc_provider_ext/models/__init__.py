from .clients import ClientProfile
from .consents import Consent
from .grants import AuthorizationGrant
from .keys import SigningKey
from .logout import BackchannelDelivery
from .sessions import OPSession
from .tenants import Tenant, TenantMembership

__all__ = [
    "BackchannelDelivery",
    "AuthorizationGrant",
    "ClientProfile",
    "Consent",
    "OPSession",
    "SigningKey",
    "Tenant",
    "TenantMembership",
]
