"""Leader election between alert engines: a lease row with expiry and a fencing epoch.

Works the same on SQLite and PostgreSQL. Every write the leader makes runs in a transaction
that *starts* by renewing the lease with ``UPDATE ... WHERE holder = me AND epoch = mine``:

* on PostgreSQL that row lock is held to commit, so a rival's takeover (an UPDATE of the same
  row) waits for it and then sees a fresh expiry; on SQLite the UPDATE takes the database's
  write lock. Either way no takeover can interleave with the leader's writes;
* if a rival took over meanwhile (the lease expired while this process was paused) the renewal
  matches no row and the transaction is abandoned: a stale leader cannot write.

Expiry is measured on the database's clock, so replicas on hosts with skewed clocks agree.
A crashed leader is replaced after at most one lease period; one that stops cleanly releases
the lease and is replaced at the rival's next attempt.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, insert, literal_column, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from logflow.db.models import AlertEngineLease, utcnow

log = logging.getLogger("logflow.alerting")
LEASE_NAME = "alert-engine"


class LostLeadership(Exception):
    """This engine no longer holds the lease; stop writing and go back to waiting."""


def db_now_ms(dialect: str) -> ColumnElement[int]:
    """The database server's current time in epoch milliseconds, as a SQL expression."""
    if dialect == "postgresql":
        return literal_column("CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)")
    return literal_column("CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)")


def new_holder_id() -> str:
    """Unique per engine instance (a restarted process is a new holder)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease:
    """This engine's view of the lease: ``epoch`` is set while it believes it leads."""

    def __init__(self, database: Engine, ttl_s: float, holder: str | None = None,
                 name: str = LEASE_NAME) -> None:
        self.database = database
        self.ttl_ms = int(ttl_s * 1000)
        self.holder = holder or new_holder_id()
        self.name = name
        self.epoch: int | None = None
        self._now = db_now_ms(database.dialect.name)

    @property
    def is_leader(self) -> bool:
        return self.epoch is not None

    def _renew(self, conn: Connection | Session) -> bool:
        assert self.epoch is not None
        t = AlertEngineLease
        result = conn.execute(
            update(t).where(t.name == self.name, t.holder == self.holder, t.epoch == self.epoch)
            .values(expires_ms=self._now + self.ttl_ms))
        return bool(getattr(result, "rowcount", 0))

    def acquire(self) -> bool:
        """Renew if leading, else take the lease if it is free or expired. True while leading."""
        t = AlertEngineLease
        with self.database.begin() as conn:
            if self.epoch is not None:
                if self._renew(conn):
                    return True
                log.warning("alert engine %s lost the lease (epoch %s)", self.holder, self.epoch)
                self.epoch = None
            taken = conn.execute(
                update(t).where(t.name == self.name, t.expires_ms < self._now)
                .values(holder=self.holder, epoch=t.epoch + 1, expires_ms=self._now + self.ttl_ms,
                        acquired_at=utcnow()))
            if taken.rowcount:
                self.epoch = conn.execute(select(t.epoch).where(t.name == self.name)).scalar_one()
        if self.epoch is None and not self._exists():
            try:
                with self.database.begin() as conn:
                    conn.execute(insert(t).values(name=self.name, holder=self.holder, epoch=1,
                                                  expires_ms=self._now + self.ttl_ms, acquired_at=utcnow()))
                self.epoch = 1
            except IntegrityError:
                pass  # a rival inserted first: it leads
        if self.epoch is not None:
            log.info("alert engine %s is the leader (epoch %s)", self.holder, self.epoch)
        return self.epoch is not None

    def _exists(self) -> bool:
        t = AlertEngineLease
        with self.database.connect() as conn:
            return conn.execute(select(t.name).where(t.name == self.name)).first() is not None

    @contextmanager
    def fenced(self, session: Session) -> Iterator[Session]:
        """Run the block in ``session``'s transaction only while still leading (LostLeadership otherwise).

        The renewal is the transaction's first statement, so it also takes the row (PostgreSQL)
        or database (SQLite) write lock that keeps a takeover from interleaving.
        """
        if self.epoch is None:
            raise LostLeadership(self.holder)
        with session.begin():
            if not self._renew(session):
                self.epoch = None
                raise LostLeadership(self.holder)
            yield session

    def release(self) -> None:
        """Give the lease up now (clean shutdown), so a rival need not wait for it to expire."""
        if self.epoch is None:
            return
        t = AlertEngineLease
        with self.database.begin() as conn:
            conn.execute(update(t).where(t.name == self.name, t.holder == self.holder,
                                         t.epoch == self.epoch).values(expires_ms=0))
        self.epoch = None
