"""The content metadata lookup (uclient-api `MZStorePlatform.woa/wa/lookup`; see
docs/apple-api.md, "Content metadata lookup").

As Apple does: public apps and books are answered without a cookie; custom (B2B) apps only
with the organization's token as the ``itvt`` cookie. ``platform=macappstore`` answers the
Mac App Store entry of an app that runs on macOS (its own bundle id and version), any other
platform the iOS entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from .models import Asset

LOOKUP_PATH = "/WebObjects/MZStorePlatform.woa/wa/lookup"
_STOREFRONTS = {
    "US": "143441",
    "FR": "143442",
    "DE": "143443",
    "GB": "143444",
    "CA": "143455",
    "AU": "143460",
    "JP": "143462",
    "ES": "143454",
    "IT": "143450",
    "NL": "143452",
}


def cookie_value(header: str | None, name: str) -> str | None:
    """One cookie from a Cookie header (lenient: the value may be URL-encoded)."""
    if not header:
        return None
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return unquote(value.strip().strip('"'))
    return None


def _device_families(asset: Asset) -> list[str]:
    families: list[str] = []
    if "iOS" in asset.platforms:
        families += ["iphone", "ipad", "ipod"]
    if "macOS" in asset.platforms:
        families.append("mac")
    return families


def _kind(asset: Asset) -> str:
    if asset.product_type == "Book":
        return "ebook"
    return "macSoftware" if asset.platforms == ("macOS",) else "iosSoftware"


def lockup(asset: Asset, cc: str, mac: bool = False) -> dict[str, Any]:
    """The `mdm-lockup` record of one asset (its Mac App Store entry with ``mac``)."""
    slug = f"Purple{int(asset.adam_id) % 211}/v4/{asset.adam_id[:2]}/{asset.adam_id[2:4]}/{asset.adam_id}"
    record: dict[str, Any] = {
        "id": asset.adam_id,
        "name": asset.name,
        "nameRaw": asset.name,
        "nameSortValue": asset.name.lower(),
        "artistName": "Example Education Publishing",
        "artistId": str(1_000_000_000 + int(asset.adam_id) % 99_999),
        "artwork": {
            "url": f"https://is1-ssl.mzstatic.com/image/thumb/{slug}/source/{{w}}x{{h}}bb.{{f}}",
            "width": 1024,
            "height": 1024,
            "bgColor": "ffffff",
        },
        "kind": _kind(asset),
        "deviceFamilies": _device_families(asset),
        "offers": [
            {
                "version": {"display": asset.version, "externalId": asset.external_version_id},
                "price": 0.0,
                "priceFormatted": "Free" if asset.product_type == "App" else "$0.00",
                "type": "get" if asset.product_type == "App" else "buy",
            }
        ],
        "genreNames": ["Education"],
        "isVppDeviceBasedLicensingEnabled": asset.device_assignable,
        "url": f"https://apps.apple.com/{cc.lower()}/app/id{asset.adam_id}",
    }
    if asset.bundle_id is not None:
        record["bundleId"] = asset.bundle_id
        record["minimumOSVersion"] = "15.0"
    if mac and "macOS" in asset.platforms and "iOS" in asset.platforms and asset.bundle_id is not None:
        # a universal purchase: the Mac App Store has its own build, bundle id and version
        record.update(kind="macSoftware", deviceFamilies=["mac"], bundleId=f"{asset.bundle_id}.macos", minimumOSVersion="12.0")
        record["offers"][0]["version"] = {"display": mac_version(asset), "externalId": asset.external_version_id + 1}
    return record


def mac_version(asset: Asset) -> str:
    """The version of a universal app's Mac build (differs from the iOS one)."""
    major, _, rest = asset.version.partition(".")
    return f"{int(major) + 10}.{rest}" if major.isdigit() else asset.version


def publish_version(assets: dict[tuple[str, str], Asset], adam_id: str, version: str | None = None) -> str:
    """A new version of an app in the App Store: every asset of ``adam_id`` (each pricingParam)
    answers ``version`` from now on, by default its version with the last number plus one (a
    universal app's Mac build follows, :func:`mac_version`); returns it."""
    found = [a for a in assets.values() if a.adam_id == str(adam_id)]
    if not found:
        raise ValueError(f"no asset with adamId {adam_id}")
    if version is None:
        head, _, last = found[0].version.rpartition(".")
        version = f"{head}.{int(last) + 1}" if head and last.isdigit() else f"{found[0].version}.1"
    for asset in found:
        asset.version, asset.external_version_id = str(version), asset.external_version_id + 1
    return str(version)


def lookup(assets: dict[tuple[str, str], Asset], query: Mapping[str, list[str]], authenticated: bool, country: str) -> dict[str, Any]:
    """Answer a lookup: public assets always, custom apps only ``authenticated``, unknown ids never."""
    cc = (query.get("cc") or [country])[0] or country
    mac = (query.get("platform") or [""])[0] == "macappstore"
    language = (query.get("l") or ["en"])[0] or "en"
    ids = [i.strip() for raw in query.get("id", []) for i in raw.split(",") if i.strip()]
    results: dict[str, Any] = {}
    by_adam: dict[str, Asset] = {}
    for asset in assets.values():
        by_adam.setdefault(asset.adam_id, asset)
    for adam_id in ids:
        found = by_adam.get(adam_id)
        if found is not None and (authenticated or not found.custom):
            results[adam_id] = lockup(found, cc, mac)
    tag = language.lower() if "-" in language else f"{language.lower()}-{cc.lower()}"
    return {
        "results": results,
        "version": 2,
        "isAuthenticated": False,
        "meta": {"storefront": {"id": _STOREFRONTS.get(cc.upper(), "143441"), "cc": cc.upper()}, "language": {"tag": tag}},
    }
