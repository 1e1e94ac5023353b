"""Resource servers as objects: model rules, the admin, ``oidc_resources``."""

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from oidc_provider_ext import checks
from oidc_provider_ext.models import ResourceServer

from . import presets
from .factories import ApplicationFactory, ResourceServerFactory, TenantFactory

pytestmark = [pytest.mark.django_db, pytest.mark.oidc_settings(presets.API_SCOPES)]


@pytest.mark.parametrize(
    "identifier",
    [
        "",
        "/relative",
        "api.example.com",
        "https://api.example.com/#x",
        "https://api.example.com/#",
        "https://user:pw@api.example.com/",
        "https://api.example.com/ a",
        "https://api.example.com/\x00",
        "https://api.example.com:99999/",
        "https://api.example.com/" + "a" * 3000,
    ],
)
def test_identifier_must_be_an_absolute_uri_without_fragment(identifier):
    with pytest.raises(ValidationError) as exc:
        ResourceServer(identifier=identifier, name="API").full_clean()
    assert "identifier" in exc.value.message_dict


def test_identifier_is_stored_exactly(db):
    server = ResourceServerFactory(identifier="https://API.example.com/mcp?v=1")
    server.full_clean()
    assert ResourceServer.objects.get().identifier == "https://API.example.com/mcp?v=1"


def test_scopes_and_tenants_must_exist():
    with pytest.raises(ValidationError) as exc:
        ResourceServer(
            identifier="https://api.example.com/", name="API", scopes="nope", tenant_codes="ghost"
        ).full_clean()
    assert set(exc.value.message_dict) == {"scopes", "tenant_codes"}


def test_identifier_must_not_be_a_client_id():
    # aud = client_id for tokens requested without resource: an API named like a client would take them.
    ApplicationFactory(client_id="https://app.example.com/client.json")
    with pytest.raises(ValidationError) as exc:
        ResourceServer(identifier="https://app.example.com/client.json", name="API").full_clean()
    assert "identifier" in exc.value.message_dict


def test_a_client_id_must_not_be_a_resource_identifier_in_the_admin():
    # Review 1 F2, the other order: aud = client_id would be the API's identifier.
    from django.forms import modelform_factory
    from oauth2_provider.models import get_application_model

    from oidc_provider_ext.admin import ClientForm

    ResourceServerFactory(identifier="https://api.example.com/mcp", enabled=False)
    form_class = modelform_factory(get_application_model(), form=ClientForm, fields=["client_id"])
    assert "client_id" in form_class(data={"client_id": "https://api.example.com/mcp"}).errors
    assert "client_id" not in form_class(data={"client_id": "https://api.example.com/mcp/"}).errors


def test_oidc_createclient_refuses_a_resource_identifier_as_client_id():
    from io import StringIO

    from oauth2_provider.models import get_application_model

    ResourceServerFactory(identifier="https://api.example.com/mcp")
    with pytest.raises(CommandError, match="resource server"):
        call_command(
            "oidc_createclient", "confidential", "client-credentials",
            "--client-id", "https://api.example.com/mcp", stdout=StringIO(),
        )  # fmt: skip
    assert not get_application_model().objects.filter(client_id="https://api.example.com/mcp").exists()


def test_command_add_list_remove():
    app = ApplicationFactory()
    TenantFactory(code="acme")
    call_command(
        "oidc_resources", "add", "https://api.example.com/mcp", "--name", "MCP", "--scopes", "api:read",
        "--client", app.client_id, "--tenants", "ACME", "--lifetime", "300",
    )  # fmt: skip
    server = ResourceServer.objects.get()
    assert (server.name, server.scopes, server.tenant_codes, server.access_token_lifetime) == (
        "MCP", "api:read", "acme", 300,
    )  # fmt: skip
    assert list(server.allowed_clients.all()) == [app]
    assert not server.any_client and server.enabled
    from io import StringIO

    out = StringIO()
    call_command("oidc_resources", "list", stdout=out)
    assert "https://api.example.com/mcp" in out.getvalue() and app.client_id in out.getvalue()
    call_command("oidc_resources", "remove", "https://api.example.com/mcp")
    assert not ResourceServer.objects.exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["add", "https://api.example.com/#f", "--name", "x"],
        ["add", "https://api.example.com/", "--name", "x", "--client", "nobody"],
        ["add", "https://api.example.com/", "--name", "x", "--scopes", "unknown"],
        ["remove", "https://nothing.example.com/"],
    ],
)
def test_command_refuses_bad_input(argv):
    with pytest.raises(CommandError):
        call_command("oidc_resources", *argv)
    assert not ResourceServer.objects.exists()


def test_admin_lists_searches_and_edits(admin_client):
    app = ApplicationFactory()
    server = ResourceServerFactory(
        identifier="https://api.example.com/mcp", name="Payments", allowed_clients=[app]
    )
    response = admin_client.get("/admin/oidc_provider_ext/resourceserver/?q=payments")
    assert response.status_code == 200 and "https://api.example.com/mcp" in response.content.decode()
    response = admin_client.get("/admin/oidc_provider_ext/resourceserver/?enabled__exact=0")
    assert "https://api.example.com/mcp" not in response.content.decode()
    response = admin_client.get(f"/admin/oidc_provider_ext/resourceserver/{server.pk}/change/")
    assert response.status_code == 200 and 'name="allowed_clients"' in response.content.decode()
    response = admin_client.post(
        "/admin/oidc_provider_ext/resourceserver/add/",
        {"identifier": "https://api.example.com/#frag", "name": "Bad", "scopes": ""},
    )
    assert response.status_code == 200 and ResourceServer.objects.count() == 1
    response = admin_client.post(
        "/admin/oidc_provider_ext/resourceserver/add/",
        {
            "identifier": "https://two.example.com/",
            "name": "Two",
            "scopes": "api:read",
            "allowed_clients": [app.pk],
            "enabled": "on",
        },
    )
    assert response.status_code == 302, response.content[:300]
    assert list(ResourceServer.objects.get(name="Two").allowed_clients.all()) == [app]


def _check_ids():
    from django.core.checks import run_checks

    return {m.id for m in run_checks(databases=["default"]) if (m.id or "").startswith("oidc_provider_ext.")}


def test_w041_resource_scope_not_in_settings():
    ResourceServerFactory(scopes="api:read api:gone", any_client=True)
    assert checks.W041 in _check_ids()


def test_w042_enabled_resource_server_without_clients():
    server = ResourceServerFactory(scopes="api:read")
    assert checks.W042 in _check_ids()
    server.any_client = True
    server.save()
    assert not {checks.W041, checks.W042} & _check_ids()


@pytest.mark.parametrize(
    ("identifier", "normal"),
    [
        ("https://api.example.com", "https://api.example.com/"),  # pydantic and browsers add "/"
        ("https://API.example.com/mcp", "https://api.example.com/mcp"),
        ("https://api.example.com:443/mcp", "https://api.example.com/mcp"),
        ("HTTPS://api.example.com/mcp", "https://api.example.com/mcp"),
    ],
)
def test_w045_identifier_not_in_the_normal_form_clients_send_back(identifier, normal):
    """The MCP SDK reads the protected-resource metadata into a pydantic URL and sends str() of it
    as `resource`; identifiers compare byte for byte, so anything but that form is invalid_target."""
    from pydantic import AnyHttpUrl

    assert str(AnyHttpUrl(identifier)) == normal == checks.normal_form(identifier)
    server = ResourceServerFactory(identifier=identifier, scopes="api:read", any_client=True)
    assert checks.W045 in _check_ids()
    ResourceServer.objects.filter(pk=server.pk).update(identifier=normal)
    assert checks.W045 not in _check_ids()
