from __future__ import annotations

import secrets

import factory
from django.contrib.auth import get_user_model
from factory.django import DjangoModelFactory
from oauth2_provider.models import get_application_model

from oidc_provider_ext.models import ClientProfile, ResourceServer, Tenant, TenantMembership

Application = get_application_model()
REDIRECT_URI = "https://rp.example.com/callback"
USER_PASSWORD = "correct horse battery staple"


class UserFactory(DjangoModelFactory[get_user_model()]):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    first_name = "Ada"
    last_name = "Lovelace"
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")

    @factory.post_generation
    def password(self, create, extracted, **kwargs):
        self.set_password(extracted or USER_PASSWORD)
        if create:
            self.save()


class ApplicationFactory(DjangoModelFactory[Application]):
    """A confidential client; ``raw_secret`` holds the secret before it is hashed."""

    class Meta:
        model = Application
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"Client {n}")
    client_id = factory.Sequence(lambda n: f"client-{n}")
    client_type = Application.CLIENT_CONFIDENTIAL
    authorization_grant_type = Application.GRANT_AUTHORIZATION_CODE
    redirect_uris = REDIRECT_URI
    post_logout_redirect_uris = "https://rp.example.com/logged-out"
    client_secret = factory.LazyFunction(lambda: secrets.token_urlsafe(32))
    hash_client_secret = True

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        raw = kwargs.get("client_secret", "")
        obj = super()._create(model_class, *args, **kwargs)
        obj.raw_secret = raw
        return obj

    profile = factory.RelatedFactory(
        "tests.factories.ClientProfileFactory", factory_related_name="application"
    )


class ClientProfileFactory(DjangoModelFactory[ClientProfile]):
    """Override through the client: ``ApplicationFactory(profile__consent_policy="skip")``."""

    class Meta:
        model = ClientProfile


class PublicApplicationFactory(ApplicationFactory):
    client_type = Application.CLIENT_PUBLIC
    client_secret = ""
    hash_client_secret = False


class TenantFactory(DjangoModelFactory[Tenant]):
    class Meta:
        model = Tenant

    code = factory.Sequence(lambda n: f"org{n}")
    name = factory.Sequence(lambda n: f"Organisation {n}")


class TenantMembershipFactory(DjangoModelFactory[TenantMembership]):
    class Meta:
        model = TenantMembership

    tenant = factory.SubFactory(TenantFactory)
    user = factory.SubFactory(UserFactory)


class ResourceServerFactory(DjangoModelFactory[ResourceServer]):
    """An API; ``ResourceServerFactory(allowed_clients=[app])`` allows clients (fail closed)."""

    class Meta:
        model = ResourceServer
        skip_postgeneration_save = True

    identifier = factory.Sequence(lambda n: f"https://api{n}.example.com/mcp")
    name = factory.Sequence(lambda n: f"API {n}")
    scopes = "api:read api:write"

    @factory.post_generation
    def allowed_clients(self, create, extracted, **kwargs):
        if create and extracted:
            self.allowed_clients.set(extracted)
