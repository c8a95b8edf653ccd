"""Settings nothing reads: unknown ``EVLOG_*`` variables and config-file keys, each with a did-you-mean.

A misspelt setting is the quietest configuration mistake there is (``EVLOG_EXPORTER=statsig`` silently keeps
the console), so each one is named at configure: one warning, or a ``ConfigError`` under ``strict``. This
module only compares names; ``_config`` says which names are known and decides what to do with the findings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import attrs

from evlog._options import ENV_PREFIX

__all__ = ["Unknown", "unknown_keys", "unknown_variables"]


@attrs.frozen
class Unknown:
    """One setting no option reads, where it was found, and the closest known name (None when nothing is near)."""

    name: str
    source: str
    suggestion: str | None

    def message(self) -> str:
        hint = f"; did you mean {self.suggestion}?" if self.suggestion else ""
        if self.source == "environment":
            return f"unknown environment variable {self.name}, ignored{hint}"
        return f"unknown key {self.name} in {self.source}, ignored{hint}"


def _closest(name: str, known: Iterable[str]) -> str | None:
    import difflib  # only once a mistake is found: import evlog stays light

    matches = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return matches[0] if matches else None


def unknown_variables(
    environ: Mapping[str, str], known: Iterable[str], exporter_prefixes: Iterable[str]
) -> list[Unknown]:
    """``EVLOG_*`` variables that are neither a known one nor under an exporter's ``EVLOG_<EXPORTER>_`` prefix.

    An exporter's own variables are checked against its options where the exporter is built, since that needs
    its class.
    """
    known = set(known)
    prefixes = tuple(exporter_prefixes)
    found = []
    for var in sorted(environ):
        if not var.startswith(ENV_PREFIX) or var in known or var.startswith(prefixes):
            continue
        found.append(Unknown(var, "environment", _closest(var, known)))
    return found


def unknown_keys(table: Mapping[str, object], known: Iterable[str], source: str) -> list[Unknown]:
    """Top-level keys of the config file that name no option."""
    known = set(known)
    return [Unknown(key, source, _closest(key, known)) for key in sorted(table) if key not in known]
