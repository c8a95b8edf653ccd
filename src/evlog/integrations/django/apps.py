"""``evlog.integrations.django`` in ``INSTALLED_APPS``: evlog is configured from ``settings.EVLOG`` at start-up."""

from __future__ import annotations

from django.apps import AppConfig
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from evlog import _api


class EvlogConfig(AppConfig):
    """Calls ``evlog.configure(**settings.EVLOG)`` when Django starts (nothing when the setting is absent)."""

    name = "evlog.integrations.django"
    label = "evlog"
    verbose_name = "evlog"

    def ready(self) -> None:
        options = getattr(settings, "EVLOG", None)
        if options is None:
            return
        if not isinstance(options, dict):
            raise ImproperlyConfigured(
                f"settings.EVLOG must be a dict of evlog.configure() arguments, got {type(options).__name__}"
            )
        _api.configure(**options)
