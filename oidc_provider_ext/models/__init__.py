from .backchannel import BackchannelDelivery
from .clients import ClientProfile
from .consents import Consent
from .devices import DeviceAuthorization
from .grants import AuthorizationGrant
from .keys import SigningKey
from .passkeys import Passkey
from .resources import ResourceServer
from .sessions import OPSession
from .tenants import Tenant, TenantMembership

__all__ = [
    "BackchannelDelivery",
    "AuthorizationGrant",
    "ClientProfile",
    "Consent",
    "DeviceAuthorization",
    "OPSession",
    "ResourceServer",
    "Passkey",
    "SigningKey",
    "Tenant",
    "TenantMembership",
]
