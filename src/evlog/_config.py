"""Configuration: one attrs ``Config`` listing every option, and its loading from arguments, environment and file.

Precedence, per option: ``configure()`` arguments > ``EVLOG_*`` environment variables > the config file
(``$EVLOG_CONFIG``, else ``./evlog.toml``, else ``[tool.evlog]`` in ``./pyproject.toml``) > defaults.
Exporter options follow the same order, per option, as ``EVLOG_<EXPORTER>_<OPTION>`` and
``[exporters.<name>]`` tables. Every bad value raises ``ConfigError`` naming its path and its source, so
switching backends is a configuration change that fails loudly when mistyped.
"""

from __future__ import annotations

import json
import os
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError

from evlog._errors import ConfigError
from evlog._serialize import converter

if TYPE_CHECKING:
    from evlog._accounting import Drop
    from evlog._event import Event
    from evlog.exporters._base import Exporter

__all__ = ["DEFAULT_EXPORTERS", "Config", "build_exporter_options", "load_config"]

DEFAULT_EXPORTERS = ("console",)
_ENV_PREFIX = "EVLOG_"

Processor = Callable[["Event"], "Event | None"]


def _check(predicate: Callable[[Any], bool], accepted: str) -> Any:
    def validator(_inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not predicate(value):
            raise ValueError(f"expected {accepted}, got {value!r}")

    return validator


@attrs.frozen(kw_only=True)
class Config:
    """Every setting of the library, resolved. Build it with ``evlog.configure(...)``.

    Each scalar option can also be set as ``EVLOG_<NAME>`` (e.g. ``EVLOG_FLUSH_INTERVAL=5``) or as a key of
    the config file.
    """

    #: The exporters events go to (instances, built from names and their options).
    exporters: tuple[Exporter, ...] = ()
    #: Seconds between background flushes. Lower means fresher data and more requests.
    flush_interval: float = attrs.field(default=1.0, validator=_check(lambda v: v > 0, "seconds > 0"))
    #: Events each exporter may hold while waiting to send (and the intake queue's size). Past it, new events
    #: are dropped and counted as ``queue_full``: memory stays bounded while a backend is down.
    max_queue_size: int = attrs.field(default=10_000, validator=_check(lambda v: v > 0, "an integer > 0"))
    #: Seconds the shutdown at interpreter exit may take, at most.
    shutdown_timeout: float = attrs.field(default=2.0, validator=_check(lambda v: v >= 0, "seconds >= 0"))
    #: Seconds a batch may spend being retried before it is dropped as ``retries_exhausted``.
    retry_deadline: float = attrs.field(default=60.0, validator=_check(lambda v: v >= 0, "seconds >= 0"))
    #: First retry delay in seconds; it doubles each attempt (with full jitter) up to ``retry_max_backoff``.
    retry_initial_backoff: float = attrs.field(default=0.5, validator=_check(lambda v: v > 0, "seconds > 0"))
    #: Longest delay between two retries, in seconds (a server's Retry-After may ask for longer).
    retry_max_backoff: float = attrs.field(default=30.0, validator=_check(lambda v: v > 0, "seconds > 0"))
    #: Fraction of events kept, from 0.0 to 1.0; the rest are counted as ``sampled_out``.
    sample_rate: float = attrs.field(default=1.0, validator=_check(lambda v: 0 <= v <= 1, "0.0 to 1.0"))
    #: Turn the library off: ``log_event`` validates its arguments and does nothing else.
    disabled: bool = False
    #: Record uncaught exceptions (main thread, other threads) as events.
    capture_exceptions: bool = False
    #: Processors run on the background thread, in order, before any exporter: ``(event) -> event | None``.
    #: ``None`` drops the event (counted as ``before_send``); a processor that raises drops it too (counted
    #: as ``processor_error``) so a failing scrubber can never leak what it was meant to remove.
    before_send: tuple[Processor, ...] = ()
    #: Called with a ``Drop`` each time events are lost, from a background thread. Must not block.
    on_drop: Callable[[Drop], None] | None = None


# Options that have an environment variable and a file key, with how to read them from a string.
_SCALARS: dict[str, type] = {
    "flush_interval": float,
    "max_queue_size": int,
    "shutdown_timeout": float,
    "retry_deadline": float,
    "retry_initial_backoff": float,
    "retry_max_backoff": float,
    "sample_rate": float,
    "disabled": bool,
    "capture_exceptions": bool,
}
_CALLABLES = ("before_send", "on_drop")
_FILE_KEYS = sorted([*_SCALARS, *_CALLABLES, "exporters"])


# --- reading values --------------------------------------------------------------------------------------


def _parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true/false (1/0, yes/no, on/off), got {text!r}")


def _parse_env(text: str, tp: Any) -> Any:
    """Turn an environment string into a value of the annotated type ``tp``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        if text.strip() == "" or text.strip().lower() == "none":
            return None
        if len(non_none) == 1:
            return _parse_env(text, non_none[0])
        return text
    if tp is bool:
        return _parse_bool(text)
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
        if stripped.startswith("["):
            value = json.loads(stripped)
        else:
            value = [part.strip() for part in stripped.split(",") if part.strip()]
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


def _env_name(*parts: str) -> str:
    return _ENV_PREFIX + "_".join(p.upper() for p in parts)


def _read_file(environ: Mapping[str, str]) -> tuple[dict[str, Any], str]:
    """The config file's evlog table and a description of where it came from ({} and '' when none)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

    explicit = environ.get("EVLOG_CONFIG")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(
                f"config file {explicit!r} does not exist (unset EVLOG_CONFIG or point it at a TOML file)",
                source="environment variable EVLOG_CONFIG",
            )
        candidates = [(path, False)]
    else:
        candidates = [(Path("evlog.toml"), False), (Path("pyproject.toml"), True)]
    for path, in_pyproject in candidates:
        if not path.is_file():
            continue
        try:
            with path.open("rb") as fh:
                doc = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"not valid TOML: {exc}", source=str(path)) from None
        if in_pyproject:
            tool = doc.get("tool")
            table = tool.get("evlog") if isinstance(tool, dict) else None
            if table is None:
                continue
            if not isinstance(table, dict):
                raise ConfigError(
                    f"expected a table ([tool.evlog] with keys such as flush_interval), got {table!r:.80}",
                    path="tool.evlog",
                    source=str(path),
                )
            return dict(table), f"{path} [tool.evlog]"
        return dict(doc), str(path)
    return {}, ""


def _resolve_callable(spec: Any, *, path: str, source: str) -> Callable[..., Any]:
    if callable(spec):
        return spec  # type: ignore[no-any-return]
    if isinstance(spec, str) and ":" in spec:
        from evlog.exporters._registry import _import_target

        try:
            obj = _import_target(spec)
        except Exception as exc:  # an import can fail in any way; it must surface as a config error
            raise ConfigError(f"cannot import {spec!r}: {exc}", path=path, source=source) from None
        if callable(obj):
            return obj  # type: ignore[no-any-return]
    raise ConfigError(f"expected a callable or a 'module:function' string, got {spec!r:.80}", path=path, source=source)


# --- exporter options ------------------------------------------------------------------------------------


def _option_types(options_cls: type) -> dict[str, Any]:
    attrs.resolve_types(options_cls)
    return {f.name: f.type for f in attrs.fields(options_cls)}


def _format_cattrs(exc: BaseException, _type: type | None) -> str:
    if isinstance(exc, ForbiddenExtraKeysError):
        return f"unknown keys {sorted(exc.extra_fields)}"
    return str(exc)


def _structure_value(value: Any, tp: Any, *, path: str, source: str) -> Any:
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


def build_exporter_options(
    exporter_cls: type[Exporter],
    values: Mapping[str, Any],
    *,
    source: str,
    sources: Mapping[str, str] | None = None,
) -> Any:
    """An instance of ``exporter_cls.Options`` from raw values, or ``ConfigError`` naming the bad one."""
    name = exporter_cls.name or exporter_cls.__name__
    options_cls = exporter_cls.Options
    types_ = _option_types(options_cls)
    prefix = f"exporters.{name}"
    unknown = sorted(set(values) - set(types_))
    if unknown:
        where = (sources or {}).get(unknown[0], source)
        raise ConfigError(
            f"unknown option {unknown[0]!r} for exporter {name!r}; "
            f"its options are: {', '.join(sorted(types_)) or '(none)'}",
            path=f"{prefix}.{unknown[0]}",
            source=where,
        )
    kwargs: dict[str, Any] = {}
    for key, raw in values.items():
        where = (sources or {}).get(key, source)
        kwargs[key] = _structure_value(raw, types_[key], path=f"{prefix}.{key}", source=where)
    try:
        return options_cls(**kwargs)
    except TypeError as exc:
        missing = [f.name for f in attrs.fields(options_cls) if f.default is attrs.NOTHING and f.name not in kwargs]
        if missing:
            env = _env_name(name, missing[0])
            raise ConfigError(
                f"exporter {name!r} needs option {missing[0]!r} (set it in configure(), "
                f"as {env}, or under [exporters.{name}] in the config file)",
                path=f"{prefix}.{missing[0]}",
                source=source,
            ) from None
        raise ConfigError(str(exc), path=prefix, source=source) from None
    except ValueError as exc:
        bad = _failing_field(options_cls, kwargs)
        if bad is None:
            raise ConfigError(str(exc), path=prefix, source=source) from None
        raise ConfigError(str(exc), path=f"{prefix}.{bad}", source=(sources or {}).get(bad, source)) from None


def _failing_field(options_cls: type, kwargs: Mapping[str, Any]) -> str | None:
    """The option whose own validator refuses its value, so the error names it (None: a cross-field check)."""
    for field in attrs.fields(options_cls):
        if field.validator is not None and field.name in kwargs and _refuses(field, kwargs[field.name]):
            return str(field.name)
    return None


def _refuses(field: attrs.Attribute[Any], value: Any) -> bool:
    assert field.validator is not None
    try:
        field.validator(None, field, value)
    except ValueError:
        return True
    except Exception:  # a validator that needs the instance: it cannot be checked alone
        return False
    return False


def _exporter_env(name: str, types_: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    prefix = _env_name(name) + "_"
    known = {_env_name(name, opt): opt for opt in types_}
    for var, text in environ.items():
        if not var.startswith(prefix):
            continue
        opt = known.get(var)
        if opt is None:
            raise ConfigError(
                f"unknown environment variable {var} for exporter {name!r}; "
                f"its variables are: {', '.join(sorted(known)) or '(none)'}",
                path=f"exporters.{name}",
                source="environment",
            )
        try:
            found[opt] = _parse_env(text, types_[opt])
        except ValueError as exc:
            raise ConfigError(str(exc), path=f"exporters.{name}.{opt}", source=f"environment variable {var}") from None
    return found


# --- the whole configuration -----------------------------------------------------------------------------


def _exporter_selection(
    arg: Any, environ: Mapping[str, str], file_data: Mapping[str, Any], file_src: str
) -> tuple[list[Any], dict[str, dict[str, Any]], dict[str, dict[str, Any]], str]:
    """(names or instances, options from args, options from file, source of the selection)."""
    file_opts: dict[str, dict[str, Any]] = {}
    file_names: list[str] | None = None
    raw_file = file_data.get("exporters")
    if isinstance(raw_file, Mapping):
        for key, table in raw_file.items():
            if not isinstance(table, Mapping):
                raise ConfigError(
                    'expected a table of options, e.g. [exporters.jsonl] with path = "events.jsonl"',
                    path=f"exporters.{key}",
                    source=file_src,
                )
            file_opts[key] = dict(table)
        file_names = list(raw_file)
        # A misspelt table must not be ignored just because the environment or configure() chose the
        # exporters: its name is checked here (its options are checked when the exporter is selected).
        from evlog.exporters._registry import available_exporters

        known = available_exporters()
        for key in file_names:
            if key not in known:
                raise ConfigError(
                    f"unknown exporter {key!r}; available exporters: {', '.join(known)}",
                    path=f"exporters.{key}",
                    source=file_src,
                )
    elif isinstance(raw_file, list) and all(isinstance(x, str) for x in raw_file):
        file_names = list(raw_file)
    elif raw_file is not None:
        raise ConfigError(
            "expected a list of exporter names or [exporters.<name>] tables",
            path="exporters",
            source=file_src,
        )

    if arg is not None:
        if isinstance(arg, str):
            raise ConfigError(
                f"expected a list of exporter names or instances, got the string {arg!r} (write exporters=[{arg!r}])",
                path="exporters",
                source="configure()",
            )
        if isinstance(arg, Mapping):
            arg_opts: dict[str, dict[str, Any]] = {}
            for key, opts in arg.items():
                if opts is not None and not isinstance(opts, Mapping):
                    raise ConfigError(
                        f"expected a mapping of options, got {type(opts).__name__}",
                        path=f"exporters.{key}",
                        source="configure()",
                    )
                arg_opts[key] = dict(opts or {})
            return list(arg), arg_opts, file_opts, "configure()"
        try:
            items = list(arg)
        except TypeError:
            raise ConfigError(
                f"expected a list of exporter names or instances, got {type(arg).__name__}",
                path="exporters",
                source="configure()",
            ) from None
        return items, {}, file_opts, "configure()"
    env = environ.get("EVLOG_EXPORTERS")
    if env is not None:
        names = [part.strip() for part in env.split(",") if part.strip()]
        return names, {}, file_opts, "environment variable EVLOG_EXPORTERS"
    if file_names is not None:
        return file_names, {}, file_opts, file_src
    return list(DEFAULT_EXPORTERS), {}, file_opts, "defaults"


def _build_exporters(
    selection: list[Any],
    arg_opts: Mapping[str, Mapping[str, Any]],
    file_opts: Mapping[str, Mapping[str, Any]],
    environ: Mapping[str, str],
    sel_source: str,
    file_src: str,
) -> tuple[Exporter, ...]:
    from evlog.exporters._base import Exporter
    from evlog.exporters._registry import load_exporter_class

    built: list[Exporter] = []
    seen: set[str] = set()
    for index, item in enumerate(selection):
        if isinstance(item, Exporter):
            built.append(item)
            continue
        if isinstance(item, type) and issubclass(item, Exporter):
            item = item.name
        if not isinstance(item, str) or not item:
            raise ConfigError(
                f"expected an exporter name or an Exporter instance, got {item!r:.80}",
                path=f"exporters[{index}]",
                source=sel_source,
            )
        if item in seen:
            raise ConfigError(f"exporter {item!r} is listed twice", path="exporters", source=sel_source)
        seen.add(item)
        cls = load_exporter_class(item, path=f"exporters[{index}]", source=sel_source)
        types_ = _option_types(cls.Options)
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for key, value in file_opts.get(item, {}).items():
            values[key], sources[key] = value, file_src
        for key, value in _exporter_env(item, types_, environ).items():
            values[key], sources[key] = value, f"environment variable {_env_name(item, key)}"
        for key, value in arg_opts.get(item, {}).items():
            values[key], sources[key] = value, "configure()"
        options = build_exporter_options(cls, values, source=sel_source, sources=sources)
        built.append(cls(options))
    return tuple(built)


def load_config(args: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Config:
    """Resolve a ``Config`` from ``configure()`` arguments (``None`` meaning "not given"), env and file."""
    environ = os.environ if environ is None else environ
    file_data, file_src = _read_file(environ)
    unknown = sorted(set(file_data) - set(_FILE_KEYS))
    if unknown:
        raise ConfigError(
            f"unknown key {unknown[0]!r}; valid keys are: {', '.join(_FILE_KEYS)}",
            path=unknown[0],
            source=file_src,
        )
    values: dict[str, Any] = {}
    for key, tp in _SCALARS.items():
        var = _env_name(key)
        if args.get(key) is not None:
            raw, source = args[key], "configure()"
        elif var in environ:
            source = f"environment variable {var}"
            try:
                raw = _parse_env(environ[var], tp)
            except ValueError as exc:
                raise ConfigError(str(exc), path=key, source=source) from None
        elif key in file_data:
            raw, source = file_data[key], file_src
        else:
            continue
        value = _structure_value(raw, tp, path=key, source=source)
        field = attrs.fields_dict(Config)[key]
        try:
            if field.validator is not None:
                field.validator(None, field, value)
        except ValueError as exc:
            raise ConfigError(str(exc), path=key, source=source) from None
        values[key] = value

    for key in _CALLABLES:
        var = _env_name(key)
        if args.get(key) is not None:
            raw, source = args[key], "configure()"
        elif var in environ:
            raw, source = environ[var], f"environment variable {var}"
            if key == "before_send":
                raw = [part.strip() for part in raw.split(",") if part.strip()]
        elif key in file_data:
            raw, source = file_data[key], file_src
        else:
            continue
        if key == "on_drop":
            values[key] = _resolve_callable(raw, path=key, source=source)
        else:
            specs = [raw] if callable(raw) or isinstance(raw, str) else list(raw)
            values[key] = tuple(
                _resolve_callable(spec, path=f"{key}[{i}]", source=source) for i, spec in enumerate(specs)
            )

    selection, arg_opts, file_opts, sel_source = _exporter_selection(
        args.get("exporters"), environ, file_data, file_src
    )
    if not selection:
        raise ConfigError(
            "no exporter selected: events would go nowhere without a word; name at least one "
            "(e.g. 'console'), or set disabled=true (EVLOG_DISABLED=1) to turn evlog off",
            path="exporters",
            source=sel_source,
        )
    values["exporters"] = _build_exporters(selection, arg_opts, file_opts, environ, sel_source, file_src)
    return Config(**values)
