"""The access-denied audit table (revision 0006): who was refused what, never the record itself.

- access_denied_log: one row per refused request (401, 403, and 404 on a record route for an
  authenticated caller: another patient's result answers 404 and must still leave a trace). It holds the
  requesting subject (`actor`, "anonymous" without a valid token), the route template, the requested
  id as given, the request id and the client address; never a patient's data. Append-only: the database
  refuses UPDATE on it, and DELETE of any row younger than 89 days (triggers of revisions 0006 and 0008),
  so only the retention (booking_workers.cron_tasks.cleanup_access_denied_log) can remove rows.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from booking_core.db.base import Base
from booking_core.db.models import BigIntPK, UTCDateTime, utcnow

ANONYMOUS = "anonymous"
# The shortest retention the cron accepts; the database refuses deleting rows younger than one day less
# (revision 0008), so a cron clock a little ahead of the database's never trips the trigger.
ACCESS_DENIED_MIN_RETENTION_DAYS = 90


class AccessDeniedLog(Base):
    """One refused request: who asked (the token's subject), for what route and id, and the answer."""

    __tablename__ = "access_denied_log"
    __table_args__ = (
        Index("ix_access_denied_log_actor_at", "actor", "at"),
        Index("ix_access_denied_log_at", "at"),  # the retention's cut-off
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    actor: Mapped[str] = mapped_column(String(100), nullable=False)  # "patient:<sub>", "anonymous"
    status: Mapped[int] = mapped_column(Integer, nullable=False)
    reason: Mapped[str] = mapped_column(String(64), nullable=False)  # unauthorized, forbidden, not_found
    method: Mapped[str] = mapped_column(String(8), nullable=False)
    route: Mapped[str] = mapped_column(String(200), nullable=False)  # the template, not the raw path
    resource_id: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(64))
    client: Mapped[str | None] = mapped_column(String(64))
