"""The names of the apps alerts are about, from whichever plugin knows them (``mdm_app_names``:
the mobile_apps plugin's metadata), asked before the alert's transaction; an app without a
known name is told by its adamId, and named at delivery (:func:`name_due`) and in listings
(:func:`name_listed`) if the name is known by then. Names only change the wording: what counts as the same alert (its
subject) is the adamId's.
"""

from __future__ import annotations

import copy
import logging
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from mdm_core.db.bulk import one_of
from mdm_core.db.typed import table_of
from mdm_core.errors import describe, one_line

from . import rules
from .models import AlertMessage, AlertSubject
from .settings import settings, thresholds

if TYPE_CHECKING:
    from mdm_core.host import Host
    from plugins.vpp.payloads import Asset

log = logging.getLogger(__name__)
MAX_NAME = 100  # characters of a name in a title; longer ones end with "..."


def safe_name(value: Any) -> str | None:
    """``value`` fit for a title and an e-mail subject: one line, no control or format
    characters (a newline from a hostile metadata answer never reaches a header), at most
    ``MAX_NAME`` characters; None when nothing is left."""
    if not isinstance(value, str):
        return None
    text = one_line("".join(" " if unicodedata.category(ch).startswith("C") else ch for ch in value))
    if len(text) > MAX_NAME:
        text = text[: MAX_NAME - 3].rstrip() + "..."
    return text or None


def app_names(host: Host, adam_ids: Iterable[str]) -> dict[str, str]:
    """``{adamId: name}`` of those the plugins can name; a failing answer is logged and leaves
    the apps named by adamId. Never call it inside a write transaction."""
    wanted = sorted({str(a) for a in adam_ids if a})
    hook = host.hook("mdm_app_names")
    if not wanted or hook is None:
        return {}
    try:
        answers = hook(host=host, adam_ids=wanted)
    except Exception as exc:  # names are a courtesy: the alert goes out without them
        log.warning("app names are not available for alerts (mdm_app_names failed): %s", describe(exc))
        return {}
    names: dict[str, str] = {}
    for answer in answers or []:
        if not isinstance(answer, dict):
            continue
        for adam_id, name in answer.items():
            clean = safe_name(name)
            if clean is not None and str(adam_id) in wanted:
                names.setdefault(str(adam_id), clean)
    return names


@dataclass(frozen=True)
class LicenseLevels:
    """What :func:`license_levels` found before an alert's transaction: ``names``, those of the
    apps whose level changes; ``found``, each asset's subject with its recorded state then and
    its level from it, which :func:`store.license_counts` takes when the state it locks is that
    one (the level is a function of the asset's counts, its threshold and that state)."""

    names: dict[str, str]
    found: dict[str, tuple[str, str]]

    @property
    def changing(self) -> bool:
        """Whether the level of any of the assets changes from its recorded state: else their
        event alerts about nothing and writes nothing (:func:`store.license_counts` finds the
        same, unless a state changed meanwhile: then as if the event came first)."""
        return any(previous != level for previous, level in self.found.values())


def license_levels(host: Host, by_account: Mapping[str, Sequence[Asset]]) -> LicenseLevels:
    """The level of each of the assets (``{account: assets}``) from its recorded state (``ok``
    when none is), as :func:`store.license_counts` finds it, and the names of those whose level
    changes now: the assets it may alert about, not every asset's. For the check (every asset)
    and an assets event (an incremental sync's names hundreds of assets whose counts moved; of
    the 81 below their threshold after the benchmark's change, 3 changed level, and the names of
    all 81 were asked and cleaned): one read of the recorded states, each level computed once
    (was: again in the transaction, for every asset). A state changed before the alert's
    transaction leaves an app told by adamId, named when its alert is sent (:func:`name_due`)."""
    limits = thresholds(settings(host))
    subjects = table_of(AlertSubject)
    of_accounts = one_of(subjects.c.account, "accounts", not host.db.is_sqlite)  # PostgreSQL: one array parameter
    query = select(subjects.c.subject, subjects.c.state).where(subjects.c.kind == "licenses", of_accounts)
    with host.db.reading() as conn:
        recorded: dict[str, str] = {str(subject): str(state) for subject, state in conn.execute(query, {"accounts": sorted(by_account)})}
    ids: set[str] = set()
    found: dict[str, tuple[str, str]] = {}
    for account, assets in by_account.items():
        for asset in assets:
            adam_id, pricing = str(asset.get("adamId")), str(asset.get("pricingParam"))
            subject = rules.license_subject(account, adam_id, pricing)
            previous = recorded.get(subject, "ok")
            level = rules.license_level(asset, limits.for_asset(adam_id, pricing), previous, limits.margin)
            found[subject] = (previous, level)
            if level != previous:
                ids.add(adam_id)
    return LicenseLevels(app_names(host, ids), found)


NAMED = ("licenses", "install", "reclaim")  # the kinds of alert about an asset, told by its app's name


def name_due(host: Host, messages: Iterable[AlertMessage]) -> None:
    """Alerts about an asset, about to be sent, that name an app by adamId because its name was
    not known when they were written (a first sync: its license alerts are written before
    mobile_apps looks its apps up; an install failing before the lookup) get the name now
    known: their title, text and fields are written again (only if unchanged meanwhile) and the
    ``messages`` changed in place. Asks ``mdm_app_names`` (never inside a write transaction);
    without an answer they stay as they are."""
    due = [m for m in messages if m.kind in NAMED]
    names = app_names(host, unnamed(m.fields for m in due))
    if not names:
        return
    table = table_of(AlertMessage)
    for message in due:
        named = relabel(message.kind, message.title, message.text, dict(message.fields or {}), names)
        if named is None:
            continue
        title, text, fields = named
        unchanged = (table.c.id == message.id) & (table.c.title == message.title) & (table.c.text == message.text)
        stmt = update(table).where(unchanged).values(title=title, text=text, fields=fields)
        if host.db.execute_write(stmt) == 1:
            message.title, message.text, message.fields = title, text, fields


def name_listed(host: Host, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Listed alerts (``mdm alerts list``, the console, the API) about an app not named yet,
    with the name known now, as they will read when sent; nothing is written. One
    ``mdm_app_names`` question for the whole listing (never inside a write transaction)."""
    listed = [r for r in rows if r.get("kind") in NAMED]
    names = app_names(host, unnamed(r.get("fields") or {} for r in listed))
    for row in listed if names else []:
        named = relabel(str(row["kind"]), str(row["title"]), str(row["text"]), dict(row.get("fields") or {}), names)
        if named is not None:
            row["title"], row["text"], row["fields"] = named
    return rows


def unnamed(fields: Iterable[dict[str, Any]]) -> set[str]:
    """The adamIds of the assets these alerts' fields tell without a name."""
    return {str(e.get("adamId")) for f in fields for e in _assets(f) if not e.get("name")}


def relabel(kind: str, title: str, text: str, fields: dict[str, Any], names: dict[str, str]) -> tuple[str, str, dict[str, Any]] | None:
    """An alert's title, text and fields (a copy) with each asset told by adamId alone named
    from ``names``, as :func:`rules.app_label` words it; None when none of them is in ``names``."""
    fields = copy.deepcopy(fields)
    changed = False
    for entry in _assets(fields):
        adam_id = str(entry.get("adamId"))
        if entry.get("name") or adam_id not in names:
            continue
        details = (str(entry.get("pricingParam")), str(entry.get("productType") or "asset")) if kind == "licenses" else (str(entry.get("pricingParam")),)
        before, after = rules.app_label(adam_id, None, *details), rules.app_label(adam_id, names[adam_id], *details)
        entry["name"], changed = names[adam_id], True
        if "title" in entry:
            entry["title"] = str(entry["title"]).replace(before, after)
        title, text = title.replace(before, after), text.replace(before, after)
    return (title, text, fields) if changed else None


def _assets(fields: dict[str, Any]) -> list[dict[str, Any]]:
    """The assets an alert's fields are about: a license digest's list, or the fields themselves."""
    assets = fields.get("assets")
    return [a for a in assets if isinstance(a, dict)] if isinstance(assets, list) else [fields]
