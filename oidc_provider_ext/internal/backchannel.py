"""Back-Channel Logout 1.0 delivery through a durable outbox. Private: not part of the documented API.

The user's logout never waits for a relying party:

1. :func:`record` (called by ``logout.end`` in the logout's transaction) stores one PENDING
   :class:`BackchannelDelivery` per client to tell, and asks for them to be handed over on commit.
2. After the commit, :func:`submit` hands them to a small process-wide pool (:data:`WORKERS`
   threads, at most :data:`QUEUE` waiting). When the pool is full they simply stay PENDING:
   ``manage.py oidc_backchannel_retry`` (cron) sends them.
3. :func:`attempt` claims a row with one conditional UPDATE (PENDING/FAILED and due, or SENDING
   with a lapsed lease -> SENDING with a new lease), so the in-process worker and the cron command
   never both deliver it; it mints a fresh logout token, POSTs it through the guarded outbound
   client (one total deadline: ``BACKCHANNEL_LOGOUT_TIMEOUT_SECONDS``), and records DELIVERED, or
   FAILED with a coarse error and an exponential backoff.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from datetime import timedelta
from urllib.parse import urlencode

from django.db import connections, transaction
from django.db.models import F
from django.utils import timezone

from oidc_provider_ext import keys
from oidc_provider_ext.conf import app_settings
from oidc_provider_ext.models import BackchannelDelivery
from oidc_provider_ext.tokens import mint_logout_token, subject_for

from . import outbound

log = logging.getLogger(__name__)

WORKERS = 4  # concurrent deliveries per process
QUEUE = 64  # deliveries waiting for a worker per process; beyond that the retry command sends them
BACKOFF_BASE_SECONDS = 30  # after the n-th failed attempt: 30 s * 2**(n-1), at most an hour
BACKOFF_MAX_SECONDS = 3600
LEASE_MARGIN_SECONDS = 30  # a SENDING row whose worker died is due again after deadline + this
DEFAULT_MAX_ATTEMPTS = 10

Status = BackchannelDelivery.Status


class _Pool:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pid = -1
        self.executor: ThreadPoolExecutor | None = None
        self.slots = threading.BoundedSemaphore(WORKERS + QUEUE)
        self.futures: set[Future] = set()

    def get(self) -> ThreadPoolExecutor:
        with self.lock:
            if self.executor is None or self.pid != os.getpid():  # (re)created after a fork
                self.executor = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="oidc-backchannel")
                self.slots = threading.BoundedSemaphore(WORKERS + QUEUE)
                self.futures = set()
                self.pid = os.getpid()
            return self.executor


_pool = _Pool()


def record(deliveries: list[BackchannelDelivery]) -> None:
    """Hand the (just created, PENDING) deliveries to the worker pool once the logout commits."""
    pks = [delivery.pk for delivery in deliveries]
    if pks:
        transaction.on_commit(lambda: submit(pks))


def submit(pks: list[int]) -> int:
    """Queue deliveries for the worker pool without waiting; returns how many were queued.

    Those that do not fit stay as they are (PENDING/FAILED) for the retry command.
    """
    executor = _pool.get()
    queued = 0
    for pk in pks:
        slots = _pool.slots
        if not slots.acquire(blocking=False):
            log.warning(
                "Back-channel logout pool full: %d deliveries left to the retry command.", len(pks) - queued
            )
            break
        with _pool.lock:
            future = executor.submit(_run, pk)
            _pool.futures.add(future)

        def done(finished: Future, slots=slots) -> None:
            slots.release()
            with _pool.lock:
                _pool.futures.discard(finished)

        future.add_done_callback(done)
        queued += 1
    return queued


def flush(timeout: float | None = None) -> None:
    """Wait until every delivery queued in this process has been attempted (tests, shutdown)."""
    while True:
        with _pool.lock:
            pending = {future for future in _pool.futures if not future.done()}
        if not pending:
            return
        wait_futures(pending, timeout=timeout)
        if timeout is not None:
            return


def _run(pk: int) -> None:
    try:
        attempt(pk)
    except Exception:
        # The row stays SENDING until its lease lapses; the retry command picks it up then.
        log.exception("Back-channel logout delivery %s raised", pk)
    finally:
        connections.close_all()  # this worker thread's connections only


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(BACKOFF_BASE_SECONDS * 2 ** max(attempts - 1, 0), BACKOFF_MAX_SECONDS))


def due(max_attempts: int = DEFAULT_MAX_ATTEMPTS):
    """Deliveries the retry command should attempt now: PENDING or FAILED and due, or SENDING with a
    lapsed lease (its worker died), below the attempt cap."""
    return BackchannelDelivery.objects.filter(
        status__in=[Status.PENDING, Status.FAILED, Status.SENDING],
        next_attempt__lte=timezone.now(),
        attempts__lt=max_attempts,
    )


def give_up_lost(max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> int:
    """SENDING rows whose worker died on their last allowed attempt: FAILED (the admin's *send
    again* can queue them anew), instead of SENDING for ever."""
    return BackchannelDelivery.objects.filter(
        status=Status.SENDING, next_attempt__lte=timezone.now(), attempts__gte=max_attempts
    ).update(status=Status.FAILED, last_error=outbound.TIMEOUT)


def attempt(pk: int, max_attempts: int | None = None) -> bool:
    """Claim delivery ``pk`` and send it once; False when it was not ours to send (delivered,
    leased by another worker, not due, or at ``max_attempts``)."""
    now = timezone.now()
    deadline = app_settings.BACKCHANNEL_LOGOUT_TIMEOUT_SECONDS
    claim = BackchannelDelivery.objects.filter(
        pk=pk, status__in=[Status.PENDING, Status.FAILED, Status.SENDING], next_attempt__lte=now
    )
    if max_attempts is not None:
        claim = claim.filter(attempts__lt=max_attempts)
    # One conditional UPDATE is the claim: of two workers racing for the row, one updates it.
    if not claim.update(
        status=Status.SENDING,
        attempts=F("attempts") + 1,
        last_attempt=now,
        next_attempt=now + timedelta(seconds=deadline + LEASE_MARGIN_SECONDS),
    ):
        return False
    delivery = BackchannelDelivery.objects.select_related("application__oidc_profile").get(pk=pk)
    error = post(delivery.uri, _logout_token(delivery))  # a fresh token for every attempt
    finished = timezone.now()
    # Only our own lease is settled: a row re-claimed after a lapsed lease has more attempts.
    BackchannelDelivery.objects.filter(pk=pk, status=Status.SENDING, attempts=delivery.attempts).update(
        status=Status.FAILED if error else Status.DELIVERED,
        last_error=error or "",
        next_attempt=finished + backoff(delivery.attempts) if error else finished,
    )
    if error:
        log.warning("Back-channel logout %s to %s failed: %s", pk, delivery.uri, error)
    return True


def _logout_token(delivery: BackchannelDelivery) -> str:
    # sub and sid were copied when the session ended: the user (and the OP session) may be gone.
    # (Rows recorded before they were copied still have their OP session.)
    subject, sid = delivery.subject, delivery.sid
    if not subject and delivery.op_session is not None:
        subject, sid = subject_for(delivery.op_session.user), delivery.op_session.sid
    return mint_logout_token(
        client_id=delivery.application.client_id,
        subject=subject,
        sid=sid,
        alg=keys.alg_for_client(delivery.application),
    )


def post(uri: str, logout_token: str) -> str | None:
    """None when the RP answered 200 or 204 (Back-Channel Logout 1.0 section 2.8), else a coarse
    error category: never the exception text, which would make the admin a port oracle."""
    try:
        response = outbound.request(
            "POST",
            uri,
            body=urlencode({"logout_token": logout_token}).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            deadline_seconds=app_settings.BACKCHANNEL_LOGOUT_TIMEOUT_SECONDS,
            max_bytes=0,
            read_body=False,  # section 2.8: only the status matters, whatever the RP says with it
        )
    except outbound.OutboundError as exc:
        return exc.category
    return None if response.status in (200, 204) else outbound.status_category(response.status)
