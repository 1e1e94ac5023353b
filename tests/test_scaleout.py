"""Several app servers over one database and one Redis (docs/operations.md, "Running several app
servers").

The first part runs in-process: what a second server would do is played by the cache and the
database directly. The second part starts the real thing (tests/scaleout/cluster.py): two gunicorn
servers of idp_project behind HAProxy, over one database and one Redis DB; every change is made
through server A and checked directly against server B.
"""

from __future__ import annotations

import pytest
from django.db import transaction
from oauth2_provider.models import get_application_model

from oidc_provider_ext.internal import clients

from .factories import ApplicationFactory

Application = get_application_model()


class _ReadRacingAChange:
    """Stands in for ``Application`` in ``internal.clients`` for one lookup: returns the row as it
    was before ``change`` and commits ``change`` while "reading", the way server B's query can
    return the old row while server A's save commits."""

    def __init__(self, client_id: str, change):
        self.client_id, self.change = client_id, change
        self.objects = self

    def select_related(self, *fields):
        return self

    def filter(self, **lookups):
        return self

    def first(self):
        stale = Application.objects.select_related("oidc_profile").get(client_id=self.client_id)
        with transaction.atomic():
            self.change()
        return stale


@pytest.mark.django_db(transaction=True)  # real commits: the second invalidation runs on commit
def test_a_client_read_while_a_change_commits_is_not_served_after_it(monkeypatch):
    app = ApplicationFactory(client_id="racing", redirect_uris="https://rp.example/old")

    def change():
        app.redirect_uris = "https://rp.example/new"
        app.save()

    with monkeypatch.context() as patched:
        patched.setattr(clients, "Application", _ReadRacingAChange("racing", change))
        assert clients.get_client("racing").redirect_uris == "https://rp.example/old"
    # The old row was cached after the change's invalidation ran; it must not be served for the
    # rest of CLIENT_CACHE_SECONDS (what a server sharing this cache would do).
    assert clients.get_client("racing").redirect_uris == "https://rp.example/new"


@pytest.mark.django_db
def test_an_evicted_generation_does_not_bring_back_old_entries(confidential_app):
    from django.core.cache import cache

    clients.get_client(confidential_app.client_id)
    Application.objects.filter(pk=confidential_app.pk).update(name="Changed")  # no signal
    clients.bump_generation()
    cache.delete(clients.GENERATION_CACHE_KEY)  # Redis evicted it (maxmemory) or was flushed
    assert clients.get_client(confidential_app.client_id).name == "Changed"
