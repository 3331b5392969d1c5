"""Installed library versions, read one way for the study's run record, the report's fallback line and the export
manifest (a module of its own: the report, the search driver and the exporter all import it, none imports another)."""

from __future__ import annotations

from importlib import metadata


def installed_versions(packages: tuple[str, ...]) -> dict[str, str]:
    """The installed versions of ``packages``; those not installed are left out."""
    found = {}
    for name in packages:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found
