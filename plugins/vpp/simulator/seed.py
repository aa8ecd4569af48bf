"""Deterministic seeding of a location: assets, devices, users and assignments."""

from __future__ import annotations

import random
import string

from .models import ASSOCIATED, DEVICE, REGISTERED, RETIRED, USER, Asset, UserRecord
from .state import SimState, make_id_hash, make_invite_code

_APP_WORDS = [
    "Math",
    "Reader",
    "Notes",
    "Atlas",
    "Chem",
    "Code",
    "Piano",
    "Draw",
    "Quiz",
    "Planner",
    "Lab",
    "Story",
    "Globe",
    "Pixel",
    "Words",
    "Bio",
    "Clock",
    "Scan",
]
_APP_SUFFIX = ["Pro", "Studio", "Kids", "Go", "Plus", "Lite", "HD", "Explorer", "Academy"]
_BOOK_WORDS = ["Introduction to", "A History of", "Field Guide to", "Essays on", "Handbook of"]
_BOOK_TOPICS = ["Algebra", "Biology", "Poetry", "Physics", "Geography", "Music", "Ancient Rome"]
_SERIAL_ALPHABET = string.ascii_uppercase + string.digits
_SERIAL_TABLE = bytes(ord(_SERIAL_ALPHABET[i % 36]) for i in range(256))

# (productType, pricingParam, deviceAssignable, revocable, platforms) forced for the first assets
# so even a tiny seed has every kind the tests need.
_FIXED_KINDS = [
    ("App", "STDQ", True, True, ("iOS",)),
    ("App", "STDQ", True, True, ("iOS", "macOS")),
    ("App", "STDQ", False, True, ("iOS",)),
    ("App", "STDQ", True, False, ("macOS",)),
    ("Book", "STDQ", False, False, ("iOS", "macOS")),
    ("App", "PLUS", True, True, ("iOS",)),  # shares the adamId of asset 0
]


def make_asset(
    rng: random.Random,
    adam_id: str,
    pricing_param: str,
    product_type: str,
    total: int,
    device_assignable: bool,
    revocable: bool,
    platforms: tuple[str, ...],
    index: int,
) -> Asset:
    """An Asset with plausible metadata (name, bundle id, version)."""
    if product_type == "Book":
        name = f"{rng.choice(_BOOK_WORDS)} {rng.choice(_BOOK_TOPICS)}"
        bundle_id = None
        version = "1.0"
    else:
        word, suffix = rng.choice(_APP_WORDS), rng.choice(_APP_SUFFIX)
        name = f"{word} {suffix}"
        bundle_id = f"com.example.{word.lower()}{suffix.lower()}{index}"
        version = f"{rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}"
    return Asset(
        adam_id, pricing_param, product_type, total, device_assignable, revocable, platforms, name, bundle_id, version, rng.randrange(800_000_000, 899_999_999)
    )


def _random_kind(rng: random.Random) -> tuple[str, str, bool, bool, tuple[str, ...]]:
    if rng.random() < 0.25:
        return ("Book", "STDQ", False, False, rng.choice([("iOS",), ("iOS", "macOS")]))
    pricing = "PLUS" if rng.random() < 0.12 else "STDQ"
    platforms = rng.choices([("iOS",), ("iOS", "macOS"), ("macOS",)], weights=[6, 3, 1])[0]
    return ("App", pricing, rng.random() < 0.85, rng.random() < 0.9, platforms)


def seed_state(state: SimState, *, assets: int = 12, devices: int = 40, users: int = 25, assignments: int | None = None) -> None:
    """Fill an empty state deterministically from `state.seed`."""
    rng = random.Random(f"{state.seed}/seed")
    _seed_assets(state, rng, assets)
    _seed_devices(state, rng, devices)
    _seed_users(state, rng, users)
    if assignments is None:
        assignments = 2 * devices + users
    _seed_assignments(state, rng, assignments)


def _seed_assets(state: SimState, rng: random.Random, count: int) -> None:
    used: set[str] = set()
    first_adam = None
    for index in range(count):
        kind = _FIXED_KINDS[index] if index < len(_FIXED_KINDS) else _random_kind(rng)
        product_type, pricing, device_ok, revocable, platforms = kind
        if index == 5 and first_adam is not None:
            adam_id = first_adam
        else:
            adam_id = str(rng.randrange(300_000_000, 1_999_999_999))
            while adam_id in used:
                adam_id = str(rng.randrange(300_000_000, 1_999_999_999))
        used.add(adam_id)
        first_adam = first_adam or adam_id
        asset = make_asset(rng, adam_id, pricing, product_type, 0, device_ok, revocable, platforms, index)
        state.assets[asset.key] = asset


def _seed_devices(state: SimState, rng: random.Random, count: int) -> None:
    seen: set[str] = set()
    while len(seen) < count:
        serial = rng.randbytes(12).translate(_SERIAL_TABLE).decode("ascii")
        if serial not in seen:
            seen.add(serial)
            state.devices.append(serial)


def _seed_users(state: SimState, rng: random.Random, count: int) -> None:
    width = max(4, len(str(count)))
    seed = state.seed
    for i in range(1, count + 1):
        cid = f"user-{i:0{width}d}"
        email = f"student{i:0{width}d}@students.example.org"
        roll = rng.random()
        # Fixed positions guarantee every status in small seeds.
        if i % 25 == 3 or (roll < 0.12 and i % 25 != 1):
            record = UserRecord(cid, email, REGISTERED, invite_code=make_invite_code(seed, cid, 0))
        elif i % 25 == 7 or roll > 0.96:
            record = UserRecord(cid, email, RETIRED, id_hash=make_id_hash(seed, cid, email))
        else:
            apple_id = f"student{i:0{width}d}@appleid.example.org" if roll < 0.6 else None
            record = UserRecord(cid, email, ASSOCIATED, managed_apple_id=apple_id, id_hash=make_id_hash(seed, cid, apple_id or email))
        state.users.add(record)


def _seed_assignments(state: SimState, rng: random.Random, total: int) -> None:
    """About 2/3 device and 1/3 user licenses; every asset keeps available licenses."""
    asset_list = list(state.assets.values())
    device_assets = [a for a in asset_list if a.device_assignable]
    user_ids = [cid for cid, rid in state.users.current.items() if state.users.records[rid].status == ASSOCIATED]
    serials = state.devices
    n_device = (2 * total) // 3 if user_ids else total
    n_user = total - n_device if asset_list else 0
    if not device_assets or not serials:
        n_device, n_user = 0, (total if user_ids and asset_list else 0)
    chosen: dict[tuple[str, str, str, str], None] = {}
    counts: dict[tuple[str, str], int] = {}
    rand = rng.random
    plans = ((n_device, device_assets, serials, DEVICE), (n_user, asset_list, user_ids, USER))
    for wanted, pool, targets, kind in plans:
        if not wanted or not pool or not targets:
            continue
        wanted = min(wanted, len(pool) * len(targets))
        pool_keys = [a.key for a in pool]
        n_pool, n_targets = len(pool), len(targets)
        goal = len(chosen) + wanted
        attempts = 0
        # Rejection sampling while sparse; an exhaustive sweep when nearly full.
        while len(chosen) < goal and attempts < wanted * 3:
            attempts += 1
            adam_id, pricing = pool_keys[int(rand() * n_pool)]
            chosen[(adam_id, pricing, kind, targets[int(rand() * n_targets)])] = None
        for adam_id, pricing in pool_keys:
            for target in targets:
                if len(chosen) >= goal:
                    break
                chosen[(adam_id, pricing, kind, target)] = None
    for key in chosen:
        counts[key[:2]] = counts.get(key[:2], 0) + 1
    state.assignments.bulk_load(chosen, 0)
    for asset in asset_list:
        asset.assigned = counts.get(asset.key, 0)
        asset.total = asset.assigned + 2 + int(rng.random() * (5 + asset.assigned // 4))
