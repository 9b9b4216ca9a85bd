"""Sending the outbox: claim due notifications (fenced by the lease), send them in a worker pool.

A claim marks the notification ``sending`` until ``claimed_until``; the worker stops starting
new attempts before then, and only after it may another engine (after a failover) claim it
again. So a notification is sent at least once and, unless a worker is paused past its own
deadline or dies between the receiver's answer and the status update, exactly once. Receivers
can drop that rare duplicate by its ``X-LogFlow-Delivery`` key (e-mail: ``Message-ID``).

The pool means a slow or dead channel only occupies its worker: the engine's loop never waits
for a send, and other rules' notifications go out on other workers.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import ssl
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, insert, or_, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from logflow.alerting.http import MAX_REDIRECTS
from logflow.alerting.lease import Lease
from logflow.alerting.notifiers import BACKOFF_CAP_S, SENDERS, Attempt, SendContext, SendFailed
from logflow.alerting.payloads import idempotency_key
from logflow.alerting.ssrf import Allowlist
from logflow.db.models import AlertNotification, AlertRule, Delivery, TriggeredAlert, utcnow
from logflow.settings import Settings

log = logging.getLogger("logflow.alerting")
MAX_ROUNDS = 6  # sends (each with its own retries) before a notification is given up ("dead")
ROUND_BACKOFF_S = (30, 60, 300, 900, 1800)
CLAIM_BATCH = 100


@dataclass(frozen=True, slots=True)
class Job:
    """One claimed notification, with the rule's channel configuration as it is now."""

    notification_id: int
    token: str
    alert_id: int
    kind: str
    seq: int
    rounds: int
    channel: str
    config: dict[str, Any]
    payload: dict[str, Any]
    budget_s: float


def _budget(channel: str, config: dict[str, Any], settings: Settings) -> float:
    """Worst-case seconds one send may take: every try times out, every backoff is at its cap."""
    if channel == "console":
        return 5.0
    if channel == "email":
        timeout, retries, hops = settings.smtp_timeout_s, settings.webhook_retries, 3
    else:
        timeout = float(config.get("timeout") or settings.webhook_timeout_s)
        retries = int(config["retries"]) if config.get("retries") is not None else settings.webhook_retries
        hops = MAX_REDIRECTS + 1
    return (retries + 1) * (timeout * hops + BACKOFF_CAP_S) + 5.0


class Dispatcher:
    """Claims and sends notifications for one engine."""

    def __init__(self, sessions: sessionmaker[Session], lease: Lease, settings: Settings,
                 allowlist: Allowlist) -> None:
        self.sessions = sessions
        self.lease = lease
        self.settings = settings
        self.allowlist = allowlist
        self.pool = ThreadPoolExecutor(settings.alert_workers, thread_name_prefix="logflow-notify")
        self.tls = ssl.create_default_context(cafile=settings.webhook_ca_file or None)
        self._lock = threading.Lock()
        self._inflight: dict[int, tuple[Job, Future[None]]] = {}

    @property
    def inflight(self) -> int:
        with self._lock:
            return len(self._inflight)

    def claim(self, now: datetime) -> list[Job]:
        """Claim due notifications (LostLeadership if this engine no longer leads)."""
        n = AlertNotification
        with self._lock:
            busy = list(self._inflight)
        due = or_(
            and_(n.status.in_(("pending", "failed")), n.next_attempt_at <= now),
            and_(n.status == "sending", n.claimed_until < now),  # its claimer died or was cut off
        )
        jobs: list[Job] = []
        with self.sessions() as session, self.lease.fenced(session):
            rows = session.execute(
                select(n, AlertRule).join(TriggeredAlert, TriggeredAlert.id == n.alert_id)
                .join(AlertRule, AlertRule.id == TriggeredAlert.rule_id)
                .where(due, n.id.not_in(busy) if busy else true()).order_by(n.id).limit(CLAIM_BATCH)).all()
            for note, rule in rows:
                config = dict(rule.notification_config or {})
                budget = _budget(rule.notification_channel, config, self.settings)
                token = uuid.uuid4().hex
                note.status, note.claim_token = "sending", token
                note.claimed_until = now + timedelta(seconds=budget)
                note.attempts += 1
                jobs.append(Job(note.id, token, note.alert_id, note.kind, note.seq, note.attempts,
                                rule.notification_channel, config, dict(note.payload), budget))
        return jobs

    def submit(self, jobs: list[Job]) -> None:
        for job in jobs:
            future = self.pool.submit(self._send, job)
            with self._lock:
                self._inflight[job.notification_id] = (job, future)
            future.add_done_callback(functools.partial(self._done, job.notification_id))

    def _done(self, notification_id: int, _future: Future[None]) -> None:
        with self._lock:
            self._inflight.pop(notification_id, None)

    def _record(self, job: Job, attempt: Attempt) -> None:
        try:
            with self.sessions() as session, session.begin():
                session.execute(insert(Delivery).values(
                    alert_id=job.alert_id, channel=job.channel, kind=job.kind, status=attempt.status,
                    error=attempt.error, duration_ms=round(attempt.duration_ms, 2), attempted_at=utcnow()))
        except IntegrityError:
            pass  # the rule (and with it the alert) was deleted meanwhile
        level = logging.INFO if attempt.status == "sent" else logging.WARNING
        log.log(level, "alert %s %s via %s: %s%s", job.alert_id, job.kind, job.channel, attempt.status,
                f" ({attempt.error})" if attempt.error else "")

    def _send(self, job: Job) -> None:
        # Leave a margin before the claim expires: past it, another engine may take the job over.
        deadline = time.monotonic() + job.budget_s * 0.9
        key = idempotency_key(job.alert_id, job.kind, job.seq)
        ctx = SendContext(allowlist=self.allowlist, timeout_s=self.settings.webhook_timeout_s,
                          retries=self.settings.webhook_retries, deadline=deadline, idempotency_key=key,
                          record=lambda attempt: self._record(job, attempt), smtp=self.settings, tls=self.tls)
        status, error = "sent", None
        try:
            SENDERS[job.channel](job.payload, job.config, ctx)
        except SendFailed as exc:
            status, error = ("dead" if exc.permanent or job.rounds >= MAX_ROUNDS else "failed"), str(exc)
        except Exception as exc:  # a bug in a sender must not kill the worker or lose the job
            log.exception("sender %s crashed", job.channel)
            status, error = ("dead" if job.rounds >= MAX_ROUNDS else "failed"), f"{type(exc).__name__}: {exc}"
            self._record(job, Attempt("failed", error, 0.0))
        self._finish(job, status, error)

    def _finish(self, job: Job, status: str, error: str | None) -> None:
        now = utcnow()
        values: dict[str, Any] = {"status": status, "last_error": error, "claimed_until": None,
                                  "claim_token": None}
        if status == "sent":
            values["sent_at"] = now
        elif status == "failed":
            delay = ROUND_BACKOFF_S[min(job.rounds - 1, len(ROUND_BACKOFF_S) - 1)]
            values["next_attempt_at"] = now + timedelta(seconds=delay)
        n = AlertNotification
        with self.sessions() as session, session.begin():
            # Only while the claim is ours: a takeover after our deadline owns the row now.
            mine = (n.id == job.notification_id) & (n.claim_token == job.token)
            session.execute(update(n).where(mine).values(**values))
        if status == "dead":
            log.error("alert %s %s via %s given up: %s", job.alert_id, job.kind, job.channel, error)

    def close(self, grace_s: float = 10.0) -> None:
        """Stop: unclaim queued jobs at once, give running sends ``grace_s`` to finish."""
        with self._lock:
            entries = list(self._inflight.values())
        for job, future in entries:
            if future.cancel():
                self._unclaim(job)
        deadline = time.monotonic() + grace_s
        for _job, future in entries:
            if not future.cancelled():
                # A timeout or a sender error: the notification's claim covers it.
                with contextlib.suppress(Exception):
                    future.result(timeout=max(0.0, deadline - time.monotonic()))
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _unclaim(self, job: Job) -> None:
        n = AlertNotification
        with self.sessions() as session, session.begin():
            session.execute(update(n).where(n.id == job.notification_id, n.claim_token == job.token).values(
                status="pending", claim_token=None, claimed_until=None, attempts=n.attempts - 1))
