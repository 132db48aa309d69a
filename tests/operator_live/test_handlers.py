"""The kopf registry the operator builds: nothing in it may make kopf put a finalizer on a CR."""

from __future__ import annotations

from types import SimpleNamespace

import kopf

from booking_core.settings import OperatorSettings
from booking_operator import handlers


def test_no_handler_requires_a_finalizer() -> None:
    registry = kopf.OperatorRegistry()
    rec = SimpleNamespace(kube=SimpleNamespace(api=None), keda=None, store=None, repair_child=print)
    handlers.register(registry, rec, OperatorSettings())  # type: ignore[arg-type]
    # Timers and daemons always require a finalizer in kopf; the resync is a plain background task.
    assert not registry._spawning._handlers
    changing = registry._changing._handlers
    # create, update and resume (kopf registers resume as reason=None, initial=True); never delete
    assert {h.reason for h in changing} == {kopf.Reason.CREATE, kopf.Reason.UPDATE, None}
    assert not any(h.requires_finalizer for h in changing)
    # every built-in child kind is watched; KEDA's kinds are watched outside kopf
    watched = {h.id for h in registry._watching._handlers}
    assert {f"child-{k.plural}" for k in handlers.BUILTIN_KINDS} <= watched
    assert not any("scaledobjects" in i for i in watched)


def test_kopf_settings_keep_state_out_of_status_and_filter_children_server_side() -> None:
    settings = kopf.OperatorSettings()
    handlers.configure_kopf(settings)
    assert isinstance(settings.persistence.progress_storage, kopf.AnnotationsProgressStorage)
    assert len(settings.watching.label_selectors) == len(handlers.BUILTIN_KINDS)
