"""Configuration: ``conf/mdm.toml`` (or ``--config`` / ``MDM_CONFIG``) plus ``MDM_*`` overrides.

Each plugin reads its own ``[<plugin>]`` table, described by a dataclass it returns from the
``mdm_config_sections`` hook. Unknown keys, wrong types and malformed TOML are one-line errors
naming the file and the key. Secrets are never required inline: a secret setting takes a
reference, ``{ env = "VAR" }`` or ``{ file = "path" }``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

from mdm_core.errors import ConfigError
from mdm_core.files import CONFIG_FILE, SMALL_SECRET_FILE, FileTooLarge, read_bounded

DEFAULT_CONFIG = Path("conf") / "mdm.toml"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def setting(default: Any, *, minimum: float | None = None, maximum: float | None = None) -> Any:
    """A numeric setting with its accepted range, or a text setting with its accepted length
    (blanks around it not counted, and dropped from the value), checked when the section is read::

    interval: int = setting(300, minimum=1, maximum=MAX_INTERVAL)
    name: str = setting("mdm-host", minimum=1, maximum=100)
    """
    return field(default=default, metadata={"minimum": minimum, "maximum": maximum})


SectionT = TypeVar("SectionT")


@dataclass(frozen=True)
class SecretRef:
    """A reference to a secret kept outside the configuration file."""

    env: str | None = None
    file: str | None = None

    def resolve(self, config: Config, environ: Mapping[str, str] | None = None) -> str:
        """Read the secret now; a missing variable or file is a one-line ConfigError."""
        environ = config.environ if environ is None else environ  # the host's environment, as loaded
        if self.env is not None:
            value = environ.get(self.env)
            if not value:
                raise ConfigError(f"environment variable {self.env} is not set: export it or change the reference")
            return value
        assert self.file is not None
        path = config.resolve_path(self.file)
        try:
            return read_bounded(path, SMALL_SECRET_FILE).decode("utf-8").strip()
        except FileTooLarge as exc:
            raise ConfigError(f"secret file {path} is larger than {exc.size}: it is not a secret; check the reference") from None
        except UnicodeDecodeError:
            raise ConfigError(f"secret file {path} is not UTF-8 text: check the reference") from None
        except OSError as exc:
            raise ConfigError(f"secret file {path} cannot be read ({exc.strerror}): create it or change the reference") from None

    def __repr__(self) -> str:
        return f"SecretRef(env={self.env!r})" if self.env else f"SecretRef(file={self.file!r})"


@dataclass
class CoreSettings:
    """``[core]``: where the host keeps its data and how it runs."""

    database_url: str = "sqlite:///var/mdm.sqlite3"
    var_dir: str = "var"
    workers: int = setting(4, minimum=1, maximum=64)
    log_level: str = "WARNING"  # the `mdm` command's logging without -v/-q: DEBUG, INFO, WARNING, ERROR
    sqlite_busy_timeout: float = setting(30.0, minimum=0, maximum=3600)
    secret_key: SecretRef | None = None
    auto_upgrade: bool = False  # `mdm run` applies pending migrations itself (under the database lock)
    delivery_budget: float = setting(10.0, minimum=0, maximum=3600)  # seconds a command spends delivering events; `mdm run` delivers the rest
    housekeeping_interval: int = setting(86400, minimum=60, maximum=365 * 86400)  # how often the core.housekeeping job deletes old history (seconds)
    event_retention_days: int = setting(30, minimum=1, maximum=3650)  # delivered events are kept this long (core_event)
    command_retention_days: int = setting(90, minimum=1, maximum=3650)  # finished MDM commands are kept this long (core_command)
    housekeeping_chunk: int = setting(1000, minimum=1, maximum=100000)  # rows deleted per transaction (short write locks on SQLite)


@dataclass
class PluginSettings:
    """``[plugins]``: which plugins load besides the built-ins."""

    enabled: list[str] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)
    autoload: bool = True


class Config:
    """The parsed configuration file; plugin sections are validated once their schemas are known."""

    def __init__(self, raw: dict[str, Any], path: Path | None, environ: Mapping[str, str]):
        self.raw = raw
        self.path = path
        self.environ = environ
        self.base_dir = _base_dir(path)
        self.core: CoreSettings = build_section(self, "core", CoreSettings)
        if self.core.log_level.upper() not in LOG_LEVELS:
            raise ConfigError(f"{self.source}: [core] log_level '{self.core.log_level}' is not a level: use one of {', '.join(LOG_LEVELS)}")
        self.plugins: PluginSettings = build_section(self, "plugins", PluginSettings)
        self._sections: dict[str, Any] = {"core": self.core, "plugins": self.plugins}

    @property
    def source(self) -> str:
        """How error messages name this configuration."""
        return str(self.path) if self.path else "built-in defaults"

    @property
    def database_url(self) -> str:
        """The database URL: ``MDM_DATABASE_URL`` wins over ``[core] database_url``."""
        url = self.environ.get("MDM_DATABASE_URL") or self.core.database_url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith("sqlite:////") and url != "sqlite://":
            relative = url[len(prefix) :]
            if relative and not relative.startswith(":memory:"):
                return prefix + str(self.resolve_path(relative))
        return url

    @property
    def database_source(self) -> str:
        """Where the database URL comes from, for messages that name the database."""
        if self.environ.get("MDM_DATABASE_URL"):
            return "from MDM_DATABASE_URL"
        if "database_url" in (self.raw.get("core") or {}):
            return f"from [core] database_url in {self.source}"
        return f"the default, relative to {self.base_dir}" + (f", the folder of {self.path}" if self.path and self.path.parent.name != "conf" else "")

    @property
    def var_dir(self) -> Path:
        """The folder for the SQLite database, the key file and other local state."""
        return self.resolve_path(self.core.var_dir)

    def resolve_path(self, value: str | os.PathLike[str]) -> Path:
        """A path from the configuration, relative ones taken from the project folder."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    def section(self, name: str, schema: type[SectionT]) -> SectionT:
        """The validated ``[name]`` table as an instance of the dataclass ``schema``."""
        if name not in self._sections:
            self._sections[name] = build_section(self, name, schema)
        return cast(SectionT, self._sections[name])

    def check_unknown_sections(self, known: set[str]) -> None:
        """Fail on a top-level table no plugin reads (likely a typo or a disabled plugin)."""
        for name in self.raw:
            if name not in known:
                raise ConfigError(f"{self.source}: unknown section [{name}]; known sections: {', '.join(sorted(known))}")


def _base_dir(path: Path | None) -> Path:
    if path is None:
        return Path.cwd()
    folder = path.resolve().parent
    return folder.parent if folder.name == "conf" else folder


def load_config(path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read the configuration: ``path``, else ``MDM_CONFIG``, else ``conf/mdm.toml`` if present."""
    environ = os.environ if environ is None else environ
    if path is None:  # --config wins over MDM_CONFIG
        refuse_empty(environ, "MDM_CONFIG", "the path of the configuration file", "conf/mdm.toml (or give --config PATH)")
    refuse_empty(environ, "MDM_DATABASE_URL", "the database URL", "[core] database_url (or the default SQLite file var/mdm.sqlite3)")
    chosen = path or environ.get("MDM_CONFIG")
    file: Path | None
    if chosen:
        file = Path(chosen)
        if not file.exists():
            raise ConfigError(f"configuration file {file} does not exist: check --config or MDM_CONFIG")
    else:
        file = DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None
    raw: dict[str, Any] = {}
    if file is not None:
        try:
            raw = tomllib.loads(read_bounded(file, CONFIG_FILE).decode("utf-8"))
        except FileTooLarge as exc:
            raise ConfigError(f"{file}: larger than {exc.size}: not a configuration file; check --config or MDM_CONFIG") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: malformed TOML: {exc}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{file}: cannot be read: {exc}") from None
    return Config(raw, file, environ)


def refuse_empty(environ: Mapping[str, str], name: str, what: str, fallback: str) -> None:
    """A variable exported empty (a failed lookup in a deploy script) is a one-line error, never
    a silent fall back to ``fallback``: ``MDM_DATABASE_URL=`` would run on another database than
    the admin's, ``MDM_SECRET_KEY=`` with another key (:meth:`mdm_core.host.Host.secret_key_source`)."""
    value = environ.get(name)
    if value is not None and not value.strip():
        raise ConfigError(f"{name} is set but empty: give it {what}, or unset it (`unset {name}`) to use {fallback}")


def build_section(config: Config, name: str, schema: type) -> Any:
    """Validate ``[name]`` against the dataclass ``schema`` and build it."""
    table = config.raw.get(name, {})
    where = f"{config.source}: [{name}]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table, not a {type(table).__name__}")
    hints = typing.get_type_hints(schema)
    known = {f.name for f in dataclasses.fields(schema)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in known:
            raise ConfigError(f"{where} unknown key '{key}'; known keys: {', '.join(sorted(known))}")
        values[key] = _check_value(f"{where} {key}", value, hints[key])
        metadata = next(f for f in dataclasses.fields(schema) if f.name == key).metadata
        _check_range(f"{where} {key}", values[key], metadata)
        if isinstance(values[key], str) and (metadata.get("minimum") is not None or metadata.get("maximum") is not None):
            values[key] = values[key].strip()  # the value checked is the value used
    try:
        return schema(**values)
    except ValueError as exc:  # a section's own check of its values (__post_init__), naming the key
        raise ConfigError(f"{where} {exc}") from None


def _check_range(where: str, value: Any, metadata: Mapping[str, Any]) -> None:
    low, high = metadata.get("minimum"), metadata.get("maximum")
    if low is None and high is None:
        return
    measured: float
    if isinstance(value, str):  # its length, blanks around it not counted
        measured, frm, unit = len(value.strip()), "", " characters long"
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        measured, frm, unit = value, "from ", ""
    else:
        return
    if (low is not None and measured < low) or (high is not None and measured > high):
        span = f"{frm}{low} to {high}" if low is not None and high is not None else f"at least {low}" if low is not None else f"at most {high}"
        raise ConfigError(f"{where} must be {span}{unit}, got {measured}")


def _check_value(where: str, value: Any, expected: Any) -> Any:
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(expected) if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _check_value(where, value, option)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0])
    if expected is SecretRef:
        if isinstance(value, dict) and set(value) in ({"env"}, {"file"}) and all(isinstance(v, str) for v in value.values()):
            return SecretRef(**value)
        raise ConfigError(f'{where} must be a secret reference like {{ env = "VAR" }} or {{ file = "path" }}, never the secret itself')
    if origin is list:
        (item_type,) = typing.get_args(expected)
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list, got {_kind(value)}")
        return [_check_value(f"{where}[{i}]", item, item_type) for i, item in enumerate(value)]
    if origin is dict:
        key_type, value_type = typing.get_args(expected) or (str, Any)
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a table, got {_kind(value)}")
        return {k: _check_value(f"{where}.{k}", v, value_type) for k, v in value.items()}
    if expected is Any:
        return value
    if origin is not None:  # another generic (tuple[...], ...): check the container only
        expected = origin
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is float and isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where} must be a finite number, got {value}")
    if expected is int and isinstance(value, bool):
        raise ConfigError(f"{where} must be an integer, got a boolean")
    if not isinstance(value, expected):
        raise ConfigError(f"{where} must be {_type_name(expected)}, got {_kind(value)}")
    return value


def _type_name(expected: Any) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(expected, str(expected))


def _kind(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a table"}.get(type(value), type(value).__name__)
