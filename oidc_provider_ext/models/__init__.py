from .backchannel import BackchannelDelivery
from .clients import ClientProfile
from .consents import Consent
from .grants import AuthorizationGrant
from .keys import SigningKey
from .registration import InitialAccessToken
from .sessions import OPSession
from .tenants import Tenant, TenantMembership

__all__ = [
    "BackchannelDelivery",
    "AuthorizationGrant",
    "ClientProfile",
    "Consent",
    "InitialAccessToken",
    "OPSession",
    "SigningKey",
    "Tenant",
    "TenantMembership",
]
