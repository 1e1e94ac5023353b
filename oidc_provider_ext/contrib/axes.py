"""A django-axes handler for ``AXES_HANDLER = "oidc_provider_ext.contrib.axes.AxesHandler"``:
axes' database handler (same tables, same lockouts), without its bookkeeping on a successful
sign-in when there is nothing to undo.

On every successful sign-in axes' handler deletes the expired failure records of everybody (the
cool-off clean-up) and, with ``AXES_RESET_ON_SUCCESS``, this (username, address) pair's records:
each a SELECT and a transaction (empty when there was nothing), four to six statements per
sign-in. This handler skips both when the same request already read the pair's failure count as 0
before the password was checked (axes' backend asks before any password is tried), and there is no
access log to write (``AXES_DISABLE_ACCESS_LOG``):

- nothing unexpired to reset: the lockout counts only records newer than the cool-off, and there
  were none. Expired ones are deleted by the clean-up every failed sign-in runs first (axes), and
  by ``axes_reset``;
- a failure of the same pair recorded by a concurrent request after that read stays counted (axes
  would have deleted it): never fewer failures than axes counts, so lockouts are not weakened.

In every other case (failures to reset, the count not read in this request, another username,
the access log on) it is axes' own handler.
"""

from __future__ import annotations

import logging

from axes.conf import settings as axes_settings
from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_username, get_credentials

log = logging.getLogger(__name__)

# On the request: (username, failure count) as axes' lockout check last read them.
FAILURES_READ = "oidc_axes_failures_read"


class AxesHandler(AxesDatabaseHandler):
    def get_failures(self, request, credentials: dict | None = None) -> int:
        failures = super().get_failures(request, credentials)
        if request is not None:
            setattr(request, FAILURES_READ, (get_client_username(request, credentials), failures))
        return failures

    def user_logged_in(self, sender, request, user, **kwargs) -> None:
        read = getattr(request, FAILURES_READ, None)
        if (
            axes_settings.AXES_DISABLE_ACCESS_LOG
            and read is not None
            and read == (get_client_username(request, get_credentials(user.get_username())), 0)
        ):
            log.debug("AXES: no failed attempts to reset for this sign-in")
            return
        super().user_logged_in(sender, request, user, **kwargs)
