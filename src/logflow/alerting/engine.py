"""The alert engine loop: lead (lease), evaluate every active rule, change alerts, send the outbox.

One round (``tick``) every ``LOGFLOW_ALERT_INTERVAL_S`` seconds:

1. renew or take the lease; a follower does nothing else (and tries again next round);
2. per active rule: count matching events per group (``evaluator``), then, in one fenced
   transaction, open alerts for newly firing groups, owe reminders, and resolve alerts whose
   condition cleared — each change together with the notification it owes (``lifecycle``);
3. claim due notifications and hand them to the worker pool (``dispatch``) without waiting.

State lives only in the database (alerts, outbox, lease), so a restarted or replacement engine
continues where the previous one stopped: it neither re-fires open alerts nor forgets owed
notifications. A rule whose evaluation fails (a store error, a bad query) is logged and
skipped; the others go on.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from logflow.alerting import lifecycle
from logflow.alerting.dispatch import Dispatcher
from logflow.alerting.evaluator import Evaluation, evaluate, samples
from logflow.alerting.lease import Lease, LostLeadership
from logflow.alerting.ssrf import parse_allowlist
from logflow.backends.store.base import LogStore
from logflow.db.models import AlertRule, TriggeredAlert, utcnow
from logflow.db.session import make_session_factory
from logflow.settings import Settings

log = logging.getLogger("logflow.alerting")


class AlertEngine:
    """Evaluates rules and sends notifications while it holds the lease."""

    def __init__(self, store: LogStore, database: Engine, settings: Settings, *,
                 holder: str | None = None) -> None:
        self.store = store
        self.settings = settings
        self.sessions = make_session_factory(database)
        self.lease = Lease(database, settings.effective_alert_lease_s, holder)
        allowlist = parse_allowlist(settings.webhook_allowed_hosts)
        self.dispatcher = Dispatcher(self.sessions, self.lease, settings, allowlist)

    @property
    def holder(self) -> str:
        return self.lease.holder

    def tick(self, now: datetime | None = None, *, dispatch: bool = True) -> bool:
        """One round; True when this engine leads. ``dispatch=False`` stops after the state changes
        (the outbox is then sent by a later round, possibly by another engine)."""
        if not self.lease.acquire():
            return False
        now = now or utcnow()
        try:
            for rule_id in self._active_rule_ids():
                try:
                    self._evaluate_rule(rule_id, now)
                except LostLeadership:
                    raise
                except Exception:
                    log.exception("alert rule %s: evaluation failed; the other rules go on", rule_id)
            if dispatch:
                self.dispatcher.submit(self.dispatcher.claim(now))
        except LostLeadership:
            log.warning("alert engine %s lost the lease mid-round; stopping this round", self.holder)
            return False
        return True

    def _active_rule_ids(self) -> list[int]:
        with self.sessions() as session:
            query = select(AlertRule.id).where(AlertRule.is_active).order_by(AlertRule.id)
            return list(session.scalars(query))

    def _evaluate_rule(self, rule_id: int, now: datetime) -> None:
        with self.sessions() as session:
            rule = session.get(AlertRule, rule_id)
            if rule is None or not rule.is_active:
                return
            opened = lifecycle.open_alerts(session, rule_id)
        evaluation = evaluate(self.store, rule, now, open_groups=list(opened),
                              base_url=self.settings.alert_base_url)
        # Samples are read before the write transaction: no store query while holding write locks.
        wanted: dict[str, list[dict[str, Any]]] = {}
        for group in evaluation.firing:
            alert = opened.get(group.key)
            if group.value and (alert is None or lifecycle.reminder_due(rule, alert, now)):
                wanted[group.key] = samples(self.store, group.filter)
        with self.sessions() as session, self.lease.fenced(session):
            self._apply(session, rule_id, evaluation, wanted, now)

    def _apply(self, session: Session, rule_id: int, evaluation: Evaluation,
               wanted: dict[str, list[dict[str, Any]]], now: datetime) -> None:
        rule = session.get(AlertRule, rule_id)
        if rule is None or not rule.is_active:
            return  # deleted or paused while we counted
        current: dict[str, TriggeredAlert] = lifecycle.open_alerts(session, rule_id)
        seen: set[str] = set()
        for group in evaluation.groups:
            seen.add(group.key)
            alert = current.get(group.key)
            if group.firing and alert is None:
                created = lifecycle.fire(session, rule, group.key, group.value, wanted.get(group.key, []),
                                         group.search, now)
                log.warning("alert %s fired: rule %r%s value=%s", created.id, rule.name,
                            f" [{group.key}]" if group.key else "", group.value)
            elif group.firing and alert is not None and lifecycle.reminder_due(rule, alert, now):
                lifecycle.remind(session, rule, alert, group.value, wanted.get(group.key, []), now)
            elif not group.firing and alert is not None:
                lifecycle.resolve(session, rule, alert, group.value, now)
                log.info("alert %s resolved: rule %r condition cleared (value=%s)",
                         alert.id, rule.name, group.value)
        for key, alert in current.items():
            if key not in seen:  # e.g. the rule stopped grouping: that group is no longer judged
                lifecycle.resolve(session, rule, alert, 0, now)

    def run(self, stop: threading.Event) -> None:
        """Evaluate every ``alert_interval_s`` until ``stop`` is set, then release the lease."""
        interval = self.settings.alert_interval_s
        log.info("alert engine %s started (interval %gs, lease %gs)", self.holder, interval,
                 self.settings.effective_alert_lease_s)
        try:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    self.tick()
                except Exception:  # the database or store is down: try again next round
                    log.exception("alert engine round failed")
                stop.wait(max(0.0, interval - (time.monotonic() - started)))
        finally:
            self.close()
            log.info("alert engine %s stopped", self.holder)

    def close(self, grace_s: float = 10.0) -> None:
        """Let running sends finish (up to ``grace_s``), then give the lease up."""
        self.dispatcher.close(grace_s)
        try:
            self.lease.release()
        except Exception:  # the database is gone: the lease simply expires
            log.warning("could not release the alert engine lease", exc_info=True)
