"""What counts as drift: a field we render that the live child no longer carries, or carries changed.

The comparison walks the desired manifest, so fields only others set (replicas under an HPA, the
scheduler's, kubectl's restartedAt annotation, defaults, status) are never looked at.

An explicit `false`, `0`, `""`, `{}` or `[]` we render is a value like any other: removing
`allowPrivilegeEscalation: false` is drift. The only absence that is not drift is one the API server
made itself by dropping an empty value on encoding; it is told apart by server-side apply's record
of ownership (metadata.managedFields): a field another manager removes (kubectl edit, a merge patch)
leaves our field manager's set, while a field the server merely did not serialise stays in it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

_QUANTITY_PARENTS = frozenset({"requests", "limits", "capacity", "allocatable", "overhead"})
_LIST_KEYS = ("name", "uid", "mountPath", "containerPort", "devicePath")
_TOP_LEVEL_SKIP = frozenset({"apiVersion", "kind", "status"})


class _Whole:
    """Ownership of everything below (an atomic list or map, or a leaf owned as a whole)."""


WHOLE = _Whole()
# None: nothing is known about ownership (an object without managedFields); False: not ours.
Owned = Mapping[str, Any] | _Whole | bool | None


def owned_fields(live: Mapping[str, Any], manager: str) -> Owned:
    """The fieldsV1 tree our manager's Apply entries own in live, or None when live records none."""
    entries = live.get("metadata", {}).get("managedFields")
    if entries is None:
        return None
    tree: dict[str, Any] = {}
    for e in entries:
        if e.get("manager") == manager and e.get("operation") == "Apply" and not e.get("subresource"):
            _merge(tree, e.get("fieldsV1") or {})
    return tree


def slim_managed_fields(
    live: Mapping[str, Any], manager: str, desired: Mapping[str, Any] | None
) -> dict[str, Any]:
    """live as a cache keeps it: of managedFields only what drift asks about desired (the ownership of
    the empty values it renders, a few paths); none when live is not compared (desired None)."""
    meta = live.get("metadata")
    if not isinstance(meta, dict) or "managedFields" not in meta:
        return dict(live)
    kept: list[dict[str, Any]] = []
    owned = owned_fields(live, manager)
    if desired is not None and isinstance(owned, Mapping):
        tree = _prune(owned, desired)
        kept = [{"manager": manager, "operation": "Apply", "fieldsV1": tree}]
    return {**live, "metadata": {**meta, "managedFields": kept}}


def _prune(owned: Mapping[str, Any], desired: Any) -> dict[str, Any]:
    """The part of a fieldsV1 tree on the paths to the empty values in desired (all drift reads)."""
    out: dict[str, Any] = {}
    if isinstance(desired, dict):
        for k, v in desired.items():
            sub = owned.get(f"f:{k}")
            if sub is None or not _has_empty(v):
                continue
            if _is_empty(v) or not sub:
                out[f"f:{k}"] = {}  # the empty value itself, or an atomic value owned whole
            elif below := _prune(sub, v):
                out[f"f:{k}"] = below
    elif isinstance(desired, list) and _list_key(desired) is not None:
        for item in desired:
            sub = _item(owned, item)
            if isinstance(sub, Mapping) and (below := _prune(sub, item)):
                ident = next(k for k, v in owned.items() if v is sub)
                out[ident] = below
            elif sub is WHOLE:
                return {}  # an atomic list: owned as a whole
    return out


def _merge(into: dict[str, Any], tree: Mapping[str, Any]) -> None:
    for k, v in tree.items():
        if isinstance(v, Mapping):
            _merge(into.setdefault(k, {}), v)


def _field(owned: Owned, key: str) -> Owned:
    if owned is None or owned is False or isinstance(owned, _Whole):
        return owned
    assert isinstance(owned, Mapping)
    sub = owned.get(f"f:{key}")
    if sub is None:
        return False
    return sub if sub else WHOLE  # `{}` is a leaf: owned with everything below it


def _item(owned: Owned, item: Mapping[str, Any]) -> Owned:
    """Ownership of one item of a keyed list (`k:{"name":"api"}`, `k:{"port":80,"protocol":"TCP"}`)."""
    if owned is None or owned is False or isinstance(owned, _Whole):
        return owned
    assert isinstance(owned, Mapping)
    keyed = False
    for k, sub in owned.items():
        if not k.startswith("k:"):
            continue
        keyed = True
        try:
            ident = json.loads(k[2:])
        except ValueError:
            continue
        # A key field we do not render was defaulted by the server (a port's protocol: TCP).
        if (
            isinstance(ident, dict)
            and any(f in item for f in ident)
            and all(item.get(f, v) == v for f, v in ident.items())
        ):
            return sub if sub else WHOLE
    return False if keyed else WHOLE  # a list without keyed items is atomic: owned as a whole


def _has_empty(value: Any) -> bool:
    if _is_empty(value):
        return True
    if isinstance(value, dict):
        return any(_has_empty(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_empty(v) for v in value)
    return False


def _is_empty(value: Any) -> bool:
    return value == {} or value == [] or value is False or value == "" or (value == 0 and value is not True)


def _absent_is_drift(desired: Any, owned: Owned) -> bool:
    """A desired field missing from live: drift unless the server dropped an empty value we own."""
    if desired is None:
        return False  # rendering None means "not set"
    if not _is_empty(desired):
        return True
    if owned is None:
        # No ownership record (the API server always sends one; this is for hand-made objects): empty
        # maps and lists are what the server drops, while the false/0 we render are pointer fields it
        # keeps (allowPrivilegeEscalation, automountServiceAccountToken), so their absence is a removal.
        return not isinstance(desired, dict | list)
    return owned is False


_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


def parse_quantity(q: Any) -> Decimal:
    """A Kubernetes resource quantity ("500m", "1Gi", "1.5", "2e3") as a number, or ValueError."""
    if isinstance(q, bool) or not isinstance(q, str | int | float):
        raise ValueError(f"not a quantity: {q!r}")
    text = str(q).strip()
    try:
        if text[-2:] in _BINARY:
            return Decimal(text[:-2]) * (Decimal(1024) ** _BINARY[text[-2:]])
        if text[-1:] in _DECIMAL and not text[-1:].isdigit():
            return Decimal(text[:-1]) * (Decimal(10) ** _DECIMAL[text[-1:]])
        return Decimal(text)  # plain numbers and decimal exponents (2e3)
    except (InvalidOperation, IndexError) as exc:
        raise ValueError(f"not a quantity: {q!r}") from exc


def _same_quantity(a: Any, b: Any) -> bool:
    try:
        return parse_quantity(a) == parse_quantity(b)
    except ValueError:
        return False


def _list_key(items: Sequence[Any]) -> str | None:
    for k in _LIST_KEYS:
        if items and all(isinstance(i, dict) and k in i for i in items):
            values = [repr(i[k]) for i in items]
            if len(set(values)) == len(values):  # a merge key must be unique (KEDA's secretTargetRef isn't)
                return k
    return None


def diff(desired: Any, live: Any, path: str = "", owned: Owned = None) -> list[str]:
    """Paths where live does not carry what desired says (extra fields in live are fine).

    `owned` is our field manager's part of live's managedFields (see owned_fields), or None.
    """
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return [path or "."]
        out: list[str] = []
        for k, v in desired.items():
            if not path and k in _TOP_LEVEL_SKIP:
                continue
            sub = f"{path}.{k}"
            if k not in live or live[k] is None:
                if _absent_is_drift(v, _field(owned, k)):
                    out.append(sub)
                continue
            if k in _QUANTITY_PARENTS and isinstance(v, dict) and isinstance(live[k], dict):
                for q, qv in v.items():
                    if q not in live[k] or (qv != live[k][q] and not _same_quantity(qv, live[k][q])):
                        out.append(f"{sub}.{q}")
                continue
            out.extend(diff(v, live[k], sub, _field(owned, k)))
        return out
    if isinstance(desired, list):
        if not isinstance(live, list):
            return [path]
        key = _list_key(desired)
        if key is not None and _list_key(live) == key:
            # Merge-keyed lists (containers, env, ports, ownerReferences): each desired item must be
            # there; items other managers added are theirs, as server-side apply treats them.
            by_key = {i[key]: i for i in live}
            out = []
            for item in desired:
                where = f"{path}[{key}={item[key]}]"
                if item[key] not in by_key:
                    out.append(where)
                else:
                    out.extend(diff(item, by_key[item[key]], where, _item(owned, item)))
            return out
        if len(desired) != len(live):
            return [path]
        whole: Owned = owned if owned is None or owned is False else WHOLE
        out = []
        for i, (d, lv) in enumerate(zip(desired, live, strict=True)):
            out.extend(diff(d, lv, f"{path}[{i}]", whole))
        return out
    if desired == live and type(desired) is type(live):
        return []
    if isinstance(desired, bool) or isinstance(live, bool):
        return [path]  # False is not 0, True is not "true"
    if isinstance(desired, str | int) and isinstance(live, str | int) and str(desired) == str(live):
        return []
    return [path]


def needs_apply(desired: Mapping[str, Any], live: Mapping[str, Any] | None, manager: str) -> list[str]:
    """Why desired must be applied: drifted field paths, ['<missing>'], or [] when live is current."""
    if live is None:
        return ["<missing>"]
    return diff(dict(desired), dict(live), owned=owned_fields(live, manager))
