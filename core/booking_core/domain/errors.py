"""Domain errors: raised by the rules, translated once at each boundary (HTTP status, DLQ reason)."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every domain rule violation; `code` is stable and machine-readable."""

    code = "domain_error"


class NotFoundError(DomainError):
    """The thing does not exist, or belongs to someone else (never tell those apart)."""

    code = "not_found"

    def __init__(self, resource: str, resource_id: str) -> None:
        super().__init__(f"{resource} not found")
        self.resource = resource
        self.resource_id = resource_id


class ConflictError(DomainError):
    """The request is valid but the current state does not allow it."""

    code = "conflict"


class SlotUnavailableError(ConflictError):
    """The slot is full, closed or already started."""

    code = "slot_unavailable"

    def __init__(self, slot_id: str, why: str = "the slot has no free capacity") -> None:
        super().__init__(why)
        self.slot_id = slot_id


class AlreadyBookedError(ConflictError):
    """The patient already holds a live booking on this slot."""

    code = "already_booked"


class InvalidTransitionError(ConflictError):
    """A booking status change the state machine does not allow."""

    code = "invalid_transition"

    def __init__(self, current: str, target: str) -> None:
        super().__init__(f"a {current} booking cannot become {target}")
        self.current = current
        self.target = target


class NoticePeriodPassedError(ConflictError):
    """Too close to the appointment to cancel or reschedule it online."""

    code = "notice_period_passed"


class NotPermittedError(DomainError):
    """The caller may not do this at all (an unregistered or deactivated patient booking)."""

    code = "not_permitted"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class ConcurrentChangeError(ConflictError):
    """Another transaction changed the row between the read and the conditional write; retry."""

    code = "concurrent_change"


class InvalidValueError(DomainError):
    """A value that breaks a domain rule; `field` names it."""

    code = "invalid_value"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
