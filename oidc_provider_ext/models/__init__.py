from .backchannel import BackchannelDelivery
from .clients import ClientProfile
from .consents import Consent
from .grants import AuthorizationGrant
from .keys import SigningKey
from .resources import ResourceServer
from .passkeys import Passkey
from .sessions import OPSession
from .tenants import Tenant, TenantMembership

__all__ = [
    "BackchannelDelivery",
    "AuthorizationGrant",
    "ClientProfile",
    "Consent",
    "OPSession",
    "ResourceServer",
    "Passkey",
    "SigningKey",
    "Tenant",
    "TenantMembership",
]
