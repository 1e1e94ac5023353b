from .backchannel import BackchannelDelivery
from .clients import ClientProfile
from .consents import Consent
from .devices import DeviceAuthorization
from .factors import RecoveryCode, TOTPDevice
from .grants import AuthorizationGrant
from .keys import SigningKey
from .passkeys import Passkey
from .registration import InitialAccessToken
from .resources import ResourceServer
from .sessions import OPSession
from .tenants import Tenant, TenantMembership

__all__ = [
    "BackchannelDelivery",
    "AuthorizationGrant",
    "ClientProfile",
    "Consent",
    "DeviceAuthorization",
    "InitialAccessToken",
    "OPSession",
    "Passkey",
    "RecoveryCode",
    "ResourceServer",
    "SigningKey",
    "TOTPDevice",
    "Tenant",
    "TenantMembership",
]
