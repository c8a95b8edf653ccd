"""Turning raw option values (environment strings, TOML values, Python values) into typed, checked values.

This module knows how one value becomes typed and how an options class is built from its values with every error
pinned to the exact option and its source; it does not know where values come from or which one wins (that is
``_config``). It imports nothing from ``evlog.exporters`` and not ``_config``, so that ``Exporter.__init__`` can
use it without the import cycle ``_config -> exporters -> _config``.
"""

from __future__ import annotations

import importlib
import json
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, Protocol

import attrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError

from evlog._errors import ConfigError
from evlog._serialize import converter

__all__ = [
    "ENV_PREFIX",
    "OptionsOwner",
    "build_exporter_options",
    "build_options",
    "env_name",
    "import_target",
    "option_types",
    "parse_bool",
    "parse_env",
    "resolve_callable",
    "split_list",
    "structure_value",
]

ENV_PREFIX = "EVLOG_"


class OptionsOwner(Protocol):
    """What ``build_exporter_options`` needs of an exporter class (a protocol, so this module need not import it)."""

    name: ClassVar[str]
    Options: ClassVar[type[Any]]


def env_name(*parts: str) -> str:
    """``EVLOG_<PART>_<PART>``: the one rule that names every environment variable."""
    return ENV_PREFIX + "_".join(p.upper() for p in parts)


# --- environment strings ---------------------------------------------------------------------------------


def parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true/false (1/0, yes/no, on/off), got {text!r}")


def parse_env(text: str, tp: Any) -> Any:
    """A value of the annotated type ``tp`` read from an environment string.

    The result is then structured like a TOML or Python value, so the environment gets the same checks as the
    other sources and only has to undo the fact that everything in it is a string.
    """
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        if text.strip() == "" or text.strip().lower() == "none":
            return None
        if len(non_none) == 1:
            return parse_env(text, non_none[0])
        return text
    if tp is bool:
        return parse_bool(text)
    if tp is int:
        try:
            return int(text.strip())
        except ValueError:
            raise ValueError(f"expected an integer, got {text!r}") from None
    if tp is float:
        try:
            return float(text.strip())
        except ValueError:
            raise ValueError(f"expected a number, got {text!r}") from None
    if tp is str or origin is typing.Literal:
        return text
    if origin in (tuple, list, Sequence, typing.Sequence) or tp in (tuple, list):
        stripped = text.strip()
        value = json.loads(stripped) if stripped.startswith("[") else split_list(stripped)
        return tuple(value) if origin is tuple else value
    if origin in (dict, Mapping, typing.Mapping) or tp is dict:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"expected a JSON object, got {text!r} ({exc})") from None
        if not isinstance(value, dict):
            raise ValueError(f"expected a JSON object, got {text!r}")
        return value
    return text


def split_list(text: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``: how the environment spells a list of names."""
    return [part.strip() for part in text.split(",") if part.strip()]


# --- import strings --------------------------------------------------------------------------------------


def import_target(target: str) -> object:
    """The object a ``module:attr.attr`` string names (the module itself when there is no attribute)."""
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    obj: object = module
    for part in attr.split(".") if attr else ():
        obj = getattr(obj, part)
    return obj


def resolve_callable(spec: Any, *, path: str, source: str) -> Callable[..., Any]:
    """``spec`` itself when callable, else what its ``module:function`` string names (files and env hold strings)."""
    if callable(spec):
        return spec  # type: ignore[no-any-return]
    if isinstance(spec, str) and ":" in spec:
        try:
            obj = import_target(spec)
        except Exception as exc:  # an import can fail in any way; it must surface as a config error
            raise ConfigError(f"cannot import {spec!r}: {exc}", path=path, source=source) from None
        if callable(obj):
            return obj  # type: ignore[no-any-return]
    raise ConfigError(f"expected a callable or a 'module:function' string, got {spec!r:.80}", path=path, source=source)


# --- typed values ----------------------------------------------------------------------------------------


def option_types(options_cls: type) -> dict[str, Any]:
    """Field name -> resolved annotation (options classes use ``from __future__ import annotations``)."""
    attrs.resolve_types(options_cls)
    return {f.name: f.type for f in attrs.fields(options_cls)}


def _format_cattrs(exc: BaseException, _type: type | None) -> str:
    if isinstance(exc, ForbiddenExtraKeysError):
        return f"unknown keys {sorted(exc.extra_fields)}"
    return str(exc)


def structure_value(value: Any, tp: Any, *, path: str, source: str) -> Any:
    """``value`` as a ``tp``, strictly (``"5"`` is not a number, ``True`` is not an integer), or ``ConfigError``."""
    try:
        return converter.structure(value, tp)
    except ClassValidationError as exc:
        from cattrs import transform_error

        msgs = transform_error(exc, path=path, format_exception=_format_cattrs)
        raise ConfigError("; ".join(msgs), path=path, source=source) from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc), path=path, source=source) from None
    except Exception as exc:  # cattrs raises its own errors for unions, literals...
        raise ConfigError(f"invalid value {value!r:.80}: {exc}", path=path, source=source) from None


# --- options classes -------------------------------------------------------------------------------------


def build_exporter_options(
    exporter_cls: type[OptionsOwner],
    values: Mapping[str, Any],
    *,
    source: str,
    sources: Mapping[str, str] | None = None,
) -> Any:
    """An instance of ``exporter_cls.Options`` from raw values, or ``ConfigError`` naming the bad option.

    ``source`` describes where the exporter was chosen (and where its defaults apply); ``sources`` maps each
    given option to where its value came from, so an error quotes the source of the very value at fault.
    """
    name = exporter_cls.name or exporter_cls.__name__
    options_cls = exporter_cls.Options
    known = option_types(options_cls)
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown option {unknown[0]!r} for exporter {name!r}; "
            f"its options are: {', '.join(sorted(known)) or '(none)'}",
            path=f"exporters.{name}.{unknown[0]}",
            source=(sources or {}).get(unknown[0], source),
        )
    missing = [
        f.name for f in attrs.fields(options_cls) if f.init and f.default is attrs.NOTHING and f.name not in values
    ]
    if missing:
        raise ConfigError(
            f"exporter {name!r} needs option {missing[0]!r} (set it in configure(), "
            f"as {env_name(name, missing[0])}, or under [exporters.{name}] in the config file)",
            path=f"exporters.{name}.{missing[0]}",
            source=source,
        )
    return build_options(options_cls, values, prefix=f"exporters.{name}", source=source, sources=sources)


def build_options(
    options_cls: type[Any],
    values: Mapping[str, Any],
    *,
    prefix: str,
    source: str,
    sources: Mapping[str, str] | None = None,
) -> Any:
    """``options_cls(**values)`` with each value structured to its field's type; errors name ``prefix.<field>``."""
    where = _Where(prefix, source, dict(sources or {}))
    types_ = option_types(options_cls)
    kwargs = {
        key: structure_value(raw, types_[key], path=where.path(key), source=where.source(key))
        for key, raw in values.items()
    }
    try:
        return options_cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise _locate(options_cls, kwargs, exc, where) from None


@attrs.frozen
class _Where:
    """How to name an option of one options class in an error, and its value's source."""

    prefix: str
    default_source: str
    sources: Mapping[str, str]

    def path(self, field: str) -> str:
        return f"{self.prefix}.{field}" if self.prefix else field

    def source(self, field: str) -> str:
        return self.sources.get(field, self.default_source)

    def all_sources(self, fields: Iterable[str]) -> str:
        """Every source that gave one of ``fields``, once each: a cross-field error may stem from any of them."""
        found = dict.fromkeys(self.sources[f] for f in fields if f in self.sources)
        return ", ".join(found) or self.default_source


def _unvalidated(options_cls: type[Any], kwargs: Mapping[str, Any]) -> tuple[Any, Exception | None]:
    """An instance with every field set (defaults and converters applied) but no validator run, and the error
    ``__attrs_post_init__`` raised on it, if any.

    Built by hand rather than with attrs' validator switch, which is process-wide: turning it off here would
    let other threads build unchecked objects (an ``evlog.User``) meanwhile.
    """
    inst = object.__new__(options_cls)
    for field in attrs.fields(options_cls):
        if field.name in kwargs:
            value = kwargs[field.name]
        elif isinstance(field.default, attrs.Factory):  # type: ignore[arg-type]
            factory = field.default.factory
            value = factory(inst) if field.default.takes_self else factory()
        elif field.default is not attrs.NOTHING:
            value = field.default
        else:
            continue
        if field.converter is not None and callable(field.converter):
            value = field.converter(value)
        object.__setattr__(inst, field.name, value)
    post_init = getattr(options_cls, "__attrs_post_init__", None)
    if post_init is not None:
        try:
            post_init(inst)
        except (TypeError, ValueError, AttributeError) as exc:
            return inst, exc
    return inst, None


def _locate(options_cls: type[Any], kwargs: Mapping[str, Any], first: Exception, where: _Where) -> ConfigError:
    """The ``ConfigError`` for a refused ``options_cls(**kwargs)``, naming the option at fault and its source.

    A validator may read other fields (statsig's endpoint check reads ``allow_insecure_http``), so each one is
    re-run against the real instance, built once without them. Field validators go first, as attrs runs
    them before ``__attrs_post_init__``; an error left to the latter is a cross-field one and names the whole
    options table with the sources of all given values.
    """
    try:
        inst, late = _unvalidated(options_cls, kwargs)
    except (TypeError, ValueError) as exc:  # a converter refused its value
        inst, late = object.__new__(options_cls), exc
    for field in attrs.fields(options_cls):
        if field.validator is None or not hasattr(inst, field.name):
            continue
        try:
            field.validator(inst, field, getattr(inst, field.name))
        except (TypeError, ValueError) as exc:
            return _restate(exc, path=where.path(field.name), source=where.source(field.name))
    cause = late if late is not None else first
    named = _field_named_by(cause, attrs.fields_dict(options_cls))
    if named is not None:
        return _restate(cause, path=where.path(named), source=where.source(named))
    return _restate(cause, path=where.prefix, source=where.all_sources(kwargs))


def _field_named_by(exc: Exception, fields: Mapping[str, object]) -> str | None:
    """The field a ``ConfigError`` raised inside an options class points at (``check_url(option="agent_url")``)."""
    if not isinstance(exc, ConfigError) or not exc.path:
        return None
    last = exc.path.rsplit(".", 1)[-1]
    return last if last in fields else None


def _restate(exc: Exception, *, path: str, source: str) -> ConfigError:
    # A ConfigError from a validator (check_url) already says "path: reason"; keep only the reason, or the
    # message would name the option twice, once without its source.
    reason = exc.reason if isinstance(exc, ConfigError) else str(exc)
    return ConfigError(reason, path=path, source=source)
