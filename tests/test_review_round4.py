"""Review round 4 (attacker): findings in the performance changes since 8bf9d50."""

import pytest
from django.contrib.sessions.base_session import AbstractBaseSession
from django.db import connection, models
from django.test.utils import isolate_apps
from django.utils import timezone

from oidc_provider_ext.internal import lookups


@pytest.mark.django_db(transaction=True)
@isolate_apps("oidc_provider_ext")
def test_delete_by_key_cascades_to_a_hidden_reverse_relation():
    """A site's row that refers to the session row with ``related_name="+"`` (a hidden reverse
    relation: ``_meta.get_fields()`` leaves it out, Django's collector does not) must be cascaded
    as ``Model.delete()`` does, not left to fail the session DELETE (sign-in/sign-out: 500)."""

    class ReviewSession(AbstractBaseSession):
        class Meta:
            app_label = "oidc_provider_ext"
            db_table = "review4_session"

    class ReviewSessionNote(models.Model):
        session = models.ForeignKey(ReviewSession, on_delete=models.CASCADE, related_name="+")

        class Meta:
            app_label = "oidc_provider_ext"
            db_table = "review4_session_note"

        def __str__(self):
            return self.session_id

    with connection.schema_editor() as editor:
        editor.create_model(ReviewSession)
        editor.create_model(ReviewSessionNote)
    try:
        key = "k" * 32
        ReviewSession.objects.create(session_key=key, session_data="", expire_date=timezone.now())
        ReviewSessionNote.objects.create(session_id=key)
        lookups.delete_by_key(ReviewSession, key, using="default")  # as ReviewSession(pk=key).delete()
        assert not ReviewSession.objects.exists()
        assert not ReviewSessionNote.objects.exists()
    finally:
        with connection.schema_editor() as editor:
            editor.delete_model(ReviewSessionNote)
            editor.delete_model(ReviewSession)
