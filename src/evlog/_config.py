"""Configuration: one attrs ``Config`` declaring every option, and its loading from arguments, environment and file.

Each option is declared once, as a ``Config`` field (type, default, validator, ``#:`` doc); its
``configure()`` parameter, ``EVLOG_<NAME>`` variable, file key and README row all follow from that field.
Precedence, per option: ``configure()`` arguments > ``EVLOG_*`` environment variables > the config file
(``$EVLOG_CONFIG``, else ``./evlog.toml``, else ``[tool.evlog]`` in ``./pyproject.toml``) > defaults, walked in
one place (``_Sources.pick``), for top-level options and exporter options (``EVLOG_<EXPORTER>_<OPTION>``,
``[exporters.<name>]``) alike. Every bad value raises ``ConfigError`` naming its path and its source, so
switching backends is a configuration change that fails loudly when mistyped.
"""

from __future__ import annotations

import enum
import functools
import inspect
import os
import re
import sys
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from evlog._accounting import Drop
from evlog._errors import ConfigError
from evlog._event import Event
from evlog._guard import guarded, internal_logger
from evlog._options import (
    ENV_PREFIX,
    build_exporter_options,
    env_name,
    option_types,
    parse_env,
    resolve_callable,
    split_list,
    structure_value,
)
from evlog._unknown import Unknown, unknown_keys, unknown_variables
from evlog.exporters._base import AppInfo, Exporter, building_for
from evlog.exporters._registry import available_exporters, load_exporter_class
from evlog.typing import Processor

__all__ = [
    "DEFAULTS",
    "DEFAULT_EXPORTERS",
    "OPTION_NAMES",
    "Config",
    "Kind",
    "OptionSpec",
    "check_header_safe",
    "find_unknown",
    "load_config",
    "option_specs",
    "read_config_file",
    "resolve_config",
    "secret_fields",
]

DEFAULT_EXPORTERS = ("console",)
#: The source named for an option no source sets.
DEFAULTS = "defaults"
_ARGUMENTS = "configure()"


class Kind(enum.Enum):
    """How an option's raw values are read; kept in each field's metadata (plain typed values need none)."""

    #: Parsed from the environment by the field's type, structured strictly, checked by the field's validator.
    VALUE = "value"
    #: A callable, or a ``module:function`` string naming one (files and the environment hold strings).
    CALLABLE = "callable"
    #: A list of those; comma-separated in the environment.
    CALLABLES = "callables"
    #: Exporter names and instances, or a mapping name -> options; each exporter has options of its own.
    EXPORTERS = "exporters"


_KIND = "evlog.kind"


@attrs.frozen
class _Check:
    """A single-value validator that can say what it accepts (shown in errors and in the README)."""

    predicate: Callable[[Any], bool]
    accepted: str

    def __call__(self, _inst: object, _attribute: attrs.Attribute[Any], value: Any) -> None:
        if not self.predicate(value):
            raise ValueError(f"expected {self.accepted}, got {value!r}")


@attrs.frozen(kw_only=True)
class Config:
    """Every setting of the library, resolved. Build it with ``evlog.configure(...)``.

    Each option can also be set as ``EVLOG_<NAME>`` (e.g. ``EVLOG_FLUSH_INTERVAL=5``) or as a key of the
    config file.
    """

    #: Where events go: each exporter gets every event that sampling and ``before_send`` keep. Exporter
    #: options: ``EVLOG_<EXPORTER>_<OPTION>``, ``[exporters.<name>]`` tables, or a mapping name -> options.
    exporters: tuple[Exporter, ...] = attrs.field(default=(), metadata={_KIND: Kind.EXPORTERS})
    #: The app's release (a version or a commit), sent with every event: each exporter puts it where its
    #: backend keeps one (Statsig's app version, OpenTelemetry's ``service.version``, a DataCat session's
    #: version...; see each exporter's page).
    release: str | None = attrs.field(
        default=None, validator=_Check(lambda v: v is None or bool(v), "a non-empty string")
    )
    #: The deployment environment (``production``, ``staging``...), sent with every event the same way.
    environment: str | None = attrs.field(
        default=None, validator=_Check(lambda v: v is None or bool(v), "a non-empty string")
    )
    #: The service's (or app's) name, sent with every event the same way.
    service: str | None = attrs.field(
        default=None, validator=_Check(lambda v: v is None or bool(v), "a non-empty string")
    )
    #: Seconds between background flushes. Lower means fresher data and more requests.
    flush_interval: float = attrs.field(default=1.0, validator=_Check(lambda v: v > 0, "seconds > 0"))
    #: Events each exporter may hold while waiting to send (and the intake queue's size). Past it, new events
    #: are dropped and counted as ``queue_full``: memory stays bounded while a backend is down.
    max_queue_size: int = attrs.field(default=10_000, validator=_Check(lambda v: v > 0, "a count > 0"))
    #: Seconds the shutdown at interpreter exit may take, at most.
    shutdown_timeout: float = attrs.field(default=2.0, validator=_Check(lambda v: v >= 0, "seconds >= 0"))
    #: Seconds a batch may spend being retried before it is dropped as ``retries_exhausted``.
    retry_deadline: float = attrs.field(default=60.0, validator=_Check(lambda v: v >= 0, "seconds >= 0"))
    #: First retry delay in seconds; it doubles each attempt (with full jitter) up to ``retry_max_backoff``.
    retry_initial_backoff: float = attrs.field(default=0.5, validator=_Check(lambda v: v > 0, "seconds > 0"))
    #: Longest delay between two retries, in seconds (a server's ``Retry-After`` may ask for longer). Short by
    #: default so delivery resumes within about this long once a backend recovers; full jitter spreads the
    #: retries of many processes so they do not arrive together.
    retry_max_backoff: float = attrs.field(default=2.0, validator=_Check(lambda v: v > 0, "seconds > 0"))
    #: Seconds ``log_event`` may wait for room when the app logs faster than events can be built (the intake
    #: queue is full); 0 drops at once instead. After one wait runs out, calls drop at once (counted) until the
    #: queue has drained, so a stuck processor cannot slow every call. A slow backend never makes it wait.
    intake_wait: float = attrs.field(default=0.1, validator=_Check(lambda v: v >= 0, "seconds >= 0"))
    #: Fraction of events kept, from 0.0 to 1.0; the rest are counted as ``sampled_out``. Exception events and
    #: events at ``error`` and above are always kept unless ``sample_errors`` is set.
    sample_rate: float = attrs.field(default=1.0, validator=_Check(lambda v: 0 <= v <= 1, "0.0 to 1.0"))
    #: Let ``sample_rate`` drop exception events and events at ``error`` and above too (off: they are all kept,
    #: since the rare failure is what sampling must never hide).
    sample_errors: bool = False
    #: Turn the library off: ``log_event`` validates its arguments and does nothing else.
    disabled: bool = False
    #: Record uncaught exceptions (main thread, other threads) as events. ``EVLOG_CAPTURE_EXCEPTIONS=1`` also
    #: installs the hooks at ``import evlog``, so a crash before the first event is recorded too.
    capture_exceptions: bool = False
    #: Install SIGTERM and SIGINT handlers that deliver what is queued (within ``shutdown_timeout``), then hand
    #: the signal to the handler that was there before, so the exit status stays what it would have been.
    handle_signals: bool = False
    #: Refuse unknown ``EVLOG_*`` variables and unknown config-file keys with ``ConfigError`` instead of one
    #: warning each configuration: for deployments where a typo must stop the app, not be noticed later.
    strict: bool = False
    #: Log the effective configuration at configure (as ``evlog config`` shows it) and one record per export
    #: outcome, on the ``evlog`` logger; a stderr handler is added when that logger has none.
    debug: bool = False
    #: Directory of the durable spool (off when unset): events are written to disk within ``spool_interval``
    #: of being logged, survive a crash or kill -9, and are delivered by the next process that starts.
    spool_dir: str | None = attrs.field(
        default=None, validator=_Check(lambda v: v is None or bool(v.strip()), "a directory path")
    )
    #: The spool's size limit in bytes; past it the oldest events are dropped and counted (``spool_full``).
    spool_max_bytes: int = attrs.field(default=256 * 1024 * 1024, validator=_Check(lambda v: v > 0, "bytes > 0"))
    #: Seconds an event may wait in the spool; older ones are dropped and counted (``spool_expired``).
    spool_max_age: float = attrs.field(default=7 * 24 * 3600.0, validator=_Check(lambda v: v > 0, "seconds > 0"))
    #: Processors run on the background thread, in order, before any exporter: ``(event) -> event | None``.
    #: ``None`` drops the event (counted as ``before_send``); a processor that raises drops it too (counted
    #: as ``processor_error``) so a failing scrubber can never leak what it was meant to remove.
    before_send: tuple[Processor, ...] = attrs.field(default=(), metadata={_KIND: Kind.CALLABLES})
    #: Called with a ``Drop`` each time events are lost, from a background thread. Must not block.
    on_drop: Callable[[Drop], None] | None = attrs.field(default=None, metadata={_KIND: Kind.CALLABLE})


#: Every option, in declaration order: the ``Config`` fields, which are also ``configure()``'s parameters.
OPTION_NAMES: tuple[str, ...] = tuple(f.name for f in attrs.fields(Config))


# --- what each option is, derived from its field ----------------------------------------------------------


@attrs.frozen
class OptionSpec:
    """One option as its ``Config`` field declares it, with the names it has in each source."""

    name: str
    #: Its environment variable, ``EVLOG_<NAME>``.
    env_var: str
    #: Its key in the config file (and in ``[tool.evlog]``).
    file_key: str
    #: The resolved annotation of the field.
    type: Any
    #: The value used when no source sets the option (for ``exporters``: the names selected by default).
    default: Any
    #: The field's ``#:`` doc comment, joined into one paragraph ("" when the source cannot be read).
    doc: str
    kind: Kind
    #: What the validator accepts, e.g. ``seconds > 0`` ("" when any value of the type is fine).
    accepted: str


@functools.cache
def option_specs() -> tuple[OptionSpec, ...]:
    """Every option of ``Config``, in declaration order, for tools that list them (the CLI, the README)."""
    hints = typing.get_type_hints(Config, localns={"Event": Event, "Drop": Drop, "Exporter": Exporter})
    docs = _doc_comments(Config)
    specs = []
    for field in attrs.fields(Config):
        kind = field.metadata.get(_KIND, Kind.VALUE)
        specs.append(
            OptionSpec(
                name=field.name,
                env_var=env_name(field.name),
                file_key=field.name,
                type=hints[field.name],
                default=DEFAULT_EXPORTERS if kind is Kind.EXPORTERS else field.default,
                doc=docs.get(field.name, ""),
                kind=kind,
                accepted=getattr(field.validator, "accepted", ""),
            )
        )
    return tuple(specs)


def _doc_comments(cls: type) -> dict[str, str]:
    """Field name -> its ``#:`` comment lines joined (Sphinx's convention, so the docs and the code agree)."""
    try:
        lines = inspect.getsource(cls).splitlines()
    except (OSError, TypeError):  # no source shipped (zipapp, frozen app): the options still work
        return {}
    docs: dict[str, str] = {}
    pending: list[str] = []
    for line in lines:
        text = line.strip()
        if text.startswith("#:"):
            pending.append(text[2:].strip())
            continue
        match = re.match(r"(\w+)\s*:", text)
        if match and pending:
            docs[match.group(1)] = " ".join(pending)
        pending = []
    return docs


# --- the sources -----------------------------------------------------------------------------------------


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


_NOT_GIVEN: Any = object()


@attrs.frozen
class _Offer:
    """The value that wins for one option, and where it came from."""

    value: Any
    source: str
    #: An environment string, still to be parsed into the option's type.
    from_env: bool


@attrs.frozen
class _Sources:
    """The environment and the config file, read once per configuration."""

    environ: Mapping[str, str]
    file: Mapping[str, Any]
    file_src: str

    def pick(self, arg: Any, env_var: str | None, file_table: Mapping[str, Any], key: str) -> _Offer | None:
        """The precedence walk, the only one: argument > environment > file; None leaves the default.

        ``arg`` is ``_NOT_GIVEN`` when the caller has no value (``configure()``'s ``None`` becomes that, while
        an exporter option given as ``None`` is a value); ``env_var`` is None for an option the environment
        cannot name (an unknown one, which the file or the arguments may still misspell).
        """
        if arg is not _NOT_GIVEN:
            return _Offer(arg, _ARGUMENTS, from_env=False)
        if env_var is not None and env_var in self.environ:
            return _Offer(self.environ[env_var], f"environment variable {env_var}", from_env=True)
        if key in file_table:
            return _Offer(file_table[key], self.file_src, from_env=False)
        return None


# --- top-level options -----------------------------------------------------------------------------------


def _read_option(spec: OptionSpec, offer: _Offer) -> Any:
    """The typed, checked value of one top-level option (not ``exporters``) from its winning source."""
    if spec.kind is Kind.CALLABLE:
        return resolve_callable(offer.value, path=spec.name, source=offer.source)
    if spec.kind is Kind.CALLABLES:
        raw = split_list(offer.value) if offer.from_env else offer.value
        specs = [raw] if callable(raw) or isinstance(raw, str) else list(raw)
        return tuple(resolve_callable(s, path=f"{spec.name}[{i}]", source=offer.source) for i, s in enumerate(specs))
    raw = offer.value
    if offer.from_env:
        try:
            raw = parse_env(raw, spec.type)
        except ValueError as exc:
            raise ConfigError(str(exc), path=spec.name, source=offer.source) from None
    value = structure_value(raw, spec.type, path=spec.name, source=offer.source)
    field = attrs.fields_dict(Config)[spec.name]
    if field.validator is not None:
        try:
            field.validator(None, field, value)  # Config's checks each read one value: no instance needed
        except ValueError as exc:
            raise ConfigError(str(exc), path=spec.name, source=offer.source) from None
    return value


# --- exporters -------------------------------------------------------------------------------------------


@attrs.frozen
class _FileExporters:
    """What the file says about exporters: the names it selects (None: it selects none) and their tables."""

    names: list[str] | None
    tables: dict[str, dict[str, Any]]


def _file_exporters(raw: Any, file_src: str) -> _FileExporters:
    if raw is None:
        return _FileExporters(None, {})
    if isinstance(raw, list) and all(isinstance(x, str) for x in raw):
        return _FileExporters(list(raw), {})
    if not isinstance(raw, Mapping):
        raise ConfigError(
            "expected a list of exporter names or [exporters.<name>] tables", path="exporters", source=file_src
        )
    tables: dict[str, dict[str, Any]] = {}
    for key, table in raw.items():
        if not isinstance(table, Mapping):
            raise ConfigError(
                'expected a table of options, e.g. [exporters.jsonl] with path = "events.jsonl"',
                path=f"exporters.{key}",
                source=file_src,
            )
        tables[key] = dict(table)
    # A misspelt table must not be ignored just because the environment or configure() chose the exporters:
    # its name is checked here (its options are checked when the exporter is selected).
    known = available_exporters()
    for key in tables:
        if key not in known:
            close = _close_matches(key, known)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(
                f"unknown exporter {key!r}; {hint}available exporters: {', '.join(known)}",
                path=f"exporters.{key}",
                source=file_src,
            )
    return _FileExporters(list(tables), tables)


@attrs.frozen
class _Selection:
    """The exporters chosen (names, classes or instances), options given with them, and who chose them."""

    items: list[Any]
    arg_options: dict[str, dict[str, Any]]
    source: str


def _select_exporters(offer: _Offer | None) -> _Selection:
    if offer is None:
        return _Selection(list(DEFAULT_EXPORTERS), {}, DEFAULTS)
    if offer.from_env:
        return _Selection(split_list(offer.value), {}, offer.source)
    if offer.source != _ARGUMENTS:  # the file's names, already checked
        return _Selection(list(offer.value), {}, offer.source)
    arg = offer.value
    if isinstance(arg, str):
        raise ConfigError(
            f"expected a list of exporter names or instances, got the string {arg!r} (write exporters=[{arg!r}])",
            path="exporters",
            source=_ARGUMENTS,
        )
    if isinstance(arg, Mapping):
        arg_options: dict[str, dict[str, Any]] = {}
        for key, opts in arg.items():
            if opts is not None and not isinstance(opts, Mapping):
                raise ConfigError(
                    f"expected a mapping of options, got {type(opts).__name__}",
                    path=f"exporters.{key}",
                    source=_ARGUMENTS,
                )
            arg_options[key] = dict(opts or {})
        return _Selection(list(arg), arg_options, _ARGUMENTS)
    try:
        items = list(arg)
    except TypeError:
        raise ConfigError(
            f"expected a list of exporter names or instances, got {type(arg).__name__}",
            path="exporters",
            source=_ARGUMENTS,
        ) from None
    return _Selection(items, {}, _ARGUMENTS)


def _check_exporter_env(name: str, known: Mapping[str, Any], environ: Mapping[str, str]) -> None:
    """A misspelt ``EVLOG_<EXPORTER>_*`` variable of a selected exporter is an error, not silently unused."""
    prefix = env_name(name) + "_"
    variables = {env_name(name, opt) for opt in known}
    for var in environ:
        if var.startswith(prefix) and var not in variables:
            close = _close_matches(var, sorted(variables))
            hint = f"did you mean {close[0]}? " if close else ""
            raise ConfigError(
                f"unknown environment variable {var} for exporter {name!r}; {hint}"
                f"its variables are: {', '.join(sorted(variables)) or '(none)'}",
                path=f"exporters.{name}",
                source="environment",
            )


def _build_exporter(
    name: str, index: int, selection: _Selection, file_tables: Mapping[str, Mapping[str, Any]], sources: _Sources
) -> tuple[Exporter, dict[str, str]]:
    """One exporter built from its options, each picked by the precedence walk; and where each came from."""
    cls = load_exporter_class(name, path=f"exporters[{index}]", source=selection.source)
    types_ = option_types(cls.Options)
    _check_exporter_env(name, types_, sources.environ)
    arg_table = selection.arg_options.get(name, {})
    file_table = file_tables.get(name, {})
    values: dict[str, Any] = {}
    value_sources: dict[str, str] = {}
    where: dict[str, str] = {}
    # Known options first, then whatever the arguments or the file add (unknown: refused by the builder).
    for key in dict.fromkeys([*types_, *arg_table, *file_table]):
        offer = sources.pick(
            arg_table.get(key, _NOT_GIVEN), env_name(name, key) if key in types_ else None, file_table, key
        )
        if offer is None:
            where[f"exporters.{name}.{key}"] = DEFAULTS
            continue
        values[key], value_sources[key] = _exporter_value(offer, types_, name, key), offer.source
        where[f"exporters.{name}.{key}"] = offer.source
    options = build_exporter_options(cls, values, source=selection.source, sources=value_sources)
    check_header_safe(name, options, value_sources, default_source=selection.source)
    return cls(options), where


def _build_exporters(
    selection: _Selection, file_tables: Mapping[str, Mapping[str, Any]], sources: _Sources
) -> tuple[tuple[Exporter, ...], dict[str, str]]:
    built: list[Exporter] = []
    where: dict[str, str] = {}
    seen: set[str] = set()
    for index, item in enumerate(selection.items):
        if isinstance(item, Exporter):
            check_header_safe(item.name, getattr(item, "options", None), {}, default_source=_ARGUMENTS)
            built.append(item)
            where[f"exporters.{item.name}"] = f"an Exporter instance given to {_ARGUMENTS}"
            continue
        if isinstance(item, type) and issubclass(item, Exporter):
            item = item.name
        if not isinstance(item, str) or not item:
            raise ConfigError(
                f"expected an exporter name or an Exporter instance, got {item!r:.80}",
                path=f"exporters[{index}]",
                source=selection.source,
            )
        if item in seen:
            raise ConfigError(f"exporter {item!r} is listed twice", path="exporters", source=selection.source)
        seen.add(item)
        exporter, exporter_where = _build_exporter(item, index, selection, file_tables, sources)
        built.append(exporter)
        where.update(exporter_where)
    return tuple(built), where


# --- the whole configuration -----------------------------------------------------------------------------


def resolve_config(args: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> tuple[Config, dict[str, str]]:
    """The ``Config``, and where each value came from: option path -> source description.

    ``args`` maps option names (``OPTION_NAMES``) to ``configure()``'s arguments, ``None`` meaning "not given".
    Paths are option names and ``exporters.<name>.<option>``; sources are ``configure()``,
    ``environment variable EVLOG_...``, the config file's description, or ``defaults``, as in ``ConfigError``.
    """
    environ = os.environ if environ is None else environ
    stray = sorted(set(args) - set(OPTION_NAMES))
    if stray:
        raise ConfigError(
            f"unknown option; the options are: {', '.join(OPTION_NAMES)}", path=stray[0], source=_ARGUMENTS
        )
    file_data, file_src = _read_file(environ)
    sources = _Sources(environ, file_data, file_src)
    values: dict[str, Any] = {}
    where: dict[str, str] = {}
    for spec in option_specs():
        if spec.kind is Kind.EXPORTERS:
            continue  # last: exporters are built (files opened...) once every other option is known to be valid
        offer = sources.pick(_given(args, spec.name), spec.env_var, file_data, spec.file_key)
        if offer is None:
            where[spec.name] = DEFAULTS
            continue
        values[spec.name] = _read_option(spec, offer)
        where[spec.name] = offer.source
    _report_unknown(find_unknown(environ, file_data, file_src), strict=values.get("strict", False))
    app = AppInfo(values.get("release"), values.get("environment"), values.get("service"))
    with building_for(app):  # exporters built from names see the app while their options are checked
        values["exporters"], exporter_where = _resolve_exporters(_given(args, "exporters"), sources)
    where.update(exporter_where)
    return Config(**values), where


def read_config_file(environ: Mapping[str, str] | None = None) -> tuple[dict[str, Any], str]:
    """The config file's evlog table and where it came from (``{}`` and ``""`` when there is none)."""
    return _read_file(os.environ if environ is None else environ)


def find_unknown(environ: Mapping[str, str], file_data: Mapping[str, Any], file_src: str) -> list[Unknown]:
    """Every ``EVLOG_*`` variable and top-level file key that no option reads, with a did-you-mean each."""
    specs = option_specs()
    variables = {spec.env_var for spec in specs} | {"EVLOG_CONFIG"}
    if any(v.startswith(ENV_PREFIX) and v not in variables for v in environ):  # else spare the entry-point scan
        prefixes = [env_name(name) + "_" for name in available_exporters()]
        found = unknown_variables(environ, variables, prefixes)
    else:
        found = []
    if file_src:
        found += unknown_keys(file_data, [spec.file_key for spec in specs], file_src)
    return found


def _report_unknown(found: list[Unknown], *, strict: bool) -> None:
    """Unknown settings: one warning for them all, or under ``strict`` a ``ConfigError`` for the first."""
    if not found:
        return
    if strict:
        first = found[0]
        source = f"environment variable {first.name}" if first.source == "environment" else first.source
        raise ConfigError(
            first.message().replace(", ignored", "") + " (strict is on: unknown settings are errors)",
            path=first.name,
            source=source,
        )
    with guarded():
        internal_logger.warning("evlog: %s", "; ".join(u.message() for u in found))


def _given(args: Mapping[str, Any], name: str) -> Any:
    # configure()'s None means "leave it to the other sources" (structlog's convention), not the value None.
    value = args.get(name)
    return _NOT_GIVEN if value is None else value


def _resolve_exporters(arg: Any, sources: _Sources) -> tuple[tuple[Exporter, ...], dict[str, str]]:
    """The exporters, chosen by the same walk as any option; the file's tables apply whoever chose them."""
    file_exporters = _file_exporters(sources.file.get("exporters"), sources.file_src)
    chosen = {} if file_exporters.names is None else {"exporters": file_exporters.names}
    selection = _select_exporters(sources.pick(arg, env_name("exporters"), chosen, "exporters"))
    if not selection.items:
        raise ConfigError(
            "no exporter selected: events would go nowhere without a word; name at least one "
            "(e.g. 'console'), or set disabled=true (EVLOG_DISABLED=1) to turn evlog off",
            path="exporters",
            source=selection.source,
        )
    exporters, where = _build_exporters(selection, file_exporters.tables, sources)
    selected = {e.name for e in exporters}
    if _may_set_others(selected, file_exporters.tables, sources.environ):
        for name in available_exporters():
            if name not in selected:
                _check_unselected(name, file_exporters.tables.get(name, {}), sources)
    return exporters, {"exporters": selection.source, **where}


def _may_set_others(selected: set[str], tables: Mapping[str, Any], environ: Mapping[str, str]) -> bool:
    """Whether anything could set an unselected exporter's options: spares every configure the entry-point scan
    ``available_exporters()`` costs (milliseconds) when nothing could."""
    if set(tables) - selected:
        return True
    known = {spec.env_var for spec in option_specs()} | {"EVLOG_CONFIG"}
    prefixes = tuple(env_name(name) + "_" for name in selected)
    return any(v.startswith(ENV_PREFIX) and v not in known and not v.startswith(prefixes) for v in environ)


def _close_matches(name: str, known: list[str]) -> list[str]:
    import difflib  # only once a mistake is found: import evlog stays light

    return difflib.get_close_matches(name, known, n=1)


def secret_fields(options: Any) -> list[str]:
    """The options that hold credentials: the fields declared ``repr=False`` (never shown, never logged)."""
    if options is None or not attrs.has(type(options)):
        return []
    return [f.name for f in attrs.fields(type(options)) if not f.repr]


def check_header_safe(exporter: str, options: Any, value_sources: Mapping[str, str], *, default_source: str) -> None:
    """Refuse a secret an HTTP header cannot carry (outside latin-1, or with a line break) now, not at send.

    Otherwise every batch would fail in the HTTP library, be retried as a network error until
    ``retry_deadline`` and be dropped: a minute of silence for what is a typo (a pasted "…" placeholder).
    """
    for name in secret_fields(options):
        value = getattr(options, name, None)
        if not isinstance(value, str):
            continue
        bad = next((ch for ch in value if ch in "\r\n\0" or ord(ch) > 0xFF), None)
        if bad is None:
            continue
        shown = "a line break" if bad in "\r\n" else f"{bad!r} (U+{ord(bad):04X})"
        raise ConfigError(
            f"contains {shown}, which an HTTP header cannot carry; paste the real credential "
            "(a placeholder such as '…' is not one)",
            path=f"exporters.{exporter}.{name}",
            source=value_sources.get(name, default_source),
        )


def _check_unselected(name: str, file_table: Mapping[str, Any], sources: _Sources) -> None:
    """Options set for an exporter that is not selected are still checked, so a switch of backends is safe.

    Each set value must be a known option of the right type; the whole options class is built (every
    validator run) once its required options are all set. Nothing is opened or sent.
    """
    prefix = env_name(name) + "_"
    if not file_table and not any(var.startswith(prefix) for var in sources.environ):
        return
    cls = load_exporter_class(name, path=f"exporters.{name}", source=sources.file_src or "environment")
    types_ = option_types(cls.Options)
    _check_exporter_env(name, types_, sources.environ)
    values: dict[str, Any] = {}
    value_sources: dict[str, str] = {}
    for key in dict.fromkeys([*types_, *file_table]):
        offer = sources.pick(_NOT_GIVEN, env_name(name, key) if key in types_ else None, file_table, key)
        if offer is None:
            continue
        raw = _exporter_value(offer, types_, name, key)
        if key in types_:
            structure_value(raw, types_[key], path=f"exporters.{name}.{key}", source=offer.source)
        values[key], value_sources[key] = raw, offer.source
    required = [f.name for f in attrs.fields(cls.Options) if f.init and f.default is attrs.NOTHING]
    if set(values) - set(types_) or all(r in values for r in required):
        source = ", ".join(dict.fromkeys(value_sources.values()))
        options = build_exporter_options(cls, values, source=source, sources=value_sources)
        check_header_safe(name, options, value_sources, default_source=source)


def load_config(args: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Config:
    """Resolve a ``Config`` from ``configure()`` arguments (``None`` meaning "not given"), env and file."""
    return resolve_config(args, environ)[0]


def _exporter_value(offer: Any, types_: Mapping[str, Any], name: str, key: str) -> Any:
    """An exporter option's raw value; an environment string parsed by the option's type."""
    if not offer.from_env:
        return offer.value
    try:
        return parse_env(offer.value, types_[key])
    except ValueError as exc:
        raise ConfigError(str(exc), path=f"exporters.{name}.{key}", source=offer.source) from None
