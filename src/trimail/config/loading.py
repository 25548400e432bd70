"""Load a ServerConfig from TOML and flag overrides, with errors a person can act on.

Every error is one line: ``<field path>: <what is wrong>``. cattrs' default error formatter
drops the validator's own message, so validation errors are rendered here instead.
"""

from __future__ import annotations

import enum
import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn
from cattrs.v import format_exception

from .model import DeliveryKind, LineEndings, ListenAddress, Rate, ServerConfig

#: A raw, not yet validated configuration tree (what TOML gives).
RawConfig = dict[str, object]


class ConfigError(Exception):
    """A bad configuration value; ``str()`` is the one line to show."""


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True)
    converter.register_structure_hook(ListenAddress, lambda value, _: _listen_address(value))
    converter.register_structure_hook(Path, lambda value, _: _path(value))
    converter.register_structure_hook(float, lambda value, _: _number(value))
    converter.register_structure_hook(int, lambda value, _: _integer(value))
    converter.register_structure_hook(str, lambda value, _: _string(value))
    converter.register_structure_hook(bool, lambda value, _: _boolean(value))
    converter.register_structure_hook(DeliveryKind, lambda value, _: _choice(DeliveryKind, value))
    converter.register_structure_hook(LineEndings, lambda value, _: _choice(LineEndings, value))
    converter.register_structure_hook_func(
        lambda type_: type_ == tuple[ListenAddress, ...], lambda value, _: _listen_addresses(value)
    )
    converter.register_structure_hook_func(
        lambda type_: type_ == tuple[str, ...], lambda value, _: _strings(value)
    )
    converter.register_structure_hook(Rate, lambda value, _: _rate(value))
    converter.register_structure_hook_factory(attrs.has, lambda cls: _table_of(cls, converter))
    return converter


def _table_of(cls: type[object], converter: cattrs.Converter) -> Callable[[object, object], object]:
    """Structure an attrs class from a TOML table, saying "expected a table" for anything else
    (cattrs alone would report a confusing error from deep inside its generated code)."""
    structure = make_dict_structure_fn(cls, converter, _cattrs_forbid_extra_keys=True)

    def hook(value: object, _type: object) -> object:
        if not isinstance(value, Mapping):
            raise TypeError(f"expected a table, got {value!r}")
        return structure(value, cls)

    return hook


def _rate(value: object) -> Rate:
    if isinstance(value, Rate):
        return value
    if not isinstance(value, str):
        raise TypeError(f'expected a rate like "30/min", got {value!r}')
    return Rate.parse(value)


def _strings(value: object) -> tuple[str, ...]:
    # A bare string would otherwise be iterated character by character.
    if not isinstance(value, list | tuple):
        raise TypeError(f'expected an array of strings like ["example.org"], got {value!r}')
    items = []
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise _ItemError(index, TypeError(f"expected a string, got {item!r}"))
        items.append(item)
    return tuple(items)


def _listen_addresses(value: object) -> tuple[ListenAddress, ...]:
    # A bare string would otherwise be iterated character by character.
    if not isinstance(value, list | tuple):
        raise TypeError('expected an array like ["127.0.0.1:2525"]')
    addresses = []
    for index, item in enumerate(value):
        try:
            addresses.append(_listen_address(item))
        except (TypeError, ValueError) as exc:
            raise _ItemError(index, exc) from exc
    return tuple(addresses)


class _ItemError(ValueError):
    """An error in one array item, so the message can name ``field[index]``."""

    def __init__(self, index: int, error: Exception) -> None:
        super().__init__(str(error))
        self.index = index


def _listen_address(value: object) -> ListenAddress:
    if not isinstance(value, str):
        raise TypeError('expected a string like "127.0.0.1:2525"')
    return ListenAddress.parse(value)


def _path(value: object) -> Path:
    if not isinstance(value, str | Path):
        raise TypeError("expected a path string")
    return Path(value)


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


def _boolean(value: object) -> bool:
    # cattrs alone would take bool("false") for True.
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {value!r}")
    return value


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


_Choice = TypeVar("_Choice", bound=enum.Enum)


def _choice(kind: type[_Choice], value: object) -> _Choice:
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(member.value for member in kind)
        raise ValueError(f"expected one of {choices}, got {value!r}") from None


def _integer(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


_converter = _make_converter()
_VALIDATOR_MESSAGE = re.compile(r"'(?P<field>\w+)' (?P<rest>.*)")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ValueError | TypeError) and str(exc):
        return str(exc)
    return format_exception(exc, None)


def _first_error(exc: BaseException, path: str) -> str:
    """Walk cattrs' exception groups to the first leaf and name its field path."""
    if isinstance(exc, cattrs.ClassValidationError | cattrs.IterableValidationError):
        with_notes, _ = exc.group_exceptions()
        if with_notes:
            inner, note = with_notes[0]
            name = getattr(note, "name", None)
            index = getattr(note, "index", None)
            step = f".{name}" if name is not None else f"[{index}]"
            return _first_error(inner, path + step)
        if exc.exceptions:
            return _first_error(exc.exceptions[0], path)
    if isinstance(exc, _ItemError):
        path += f"[{exc.index}]"
    path = path.lstrip(".")
    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        keys = ", ".join(sorted(exc.extra_fields))
        return f"{path or 'config'}: unknown key(s) {keys}; remove them or check the spelling"
    message = _describe(exc)
    # attrs validators run in __init__ and name their field as "'field' must ...".
    named = _VALIDATOR_MESSAGE.match(message)
    if named:
        path = f"{path}.{named['field']}" if path else named["field"]
        message = named["rest"]
    return f"{path or 'config'}: {message}"


def structure_config(raw: Mapping[str, object]) -> ServerConfig:
    try:
        return _converter.structure(dict(raw), ServerConfig)
    except (cattrs.BaseValidationError, ValueError, TypeError) as exc:
        raise ConfigError(_first_error(exc, "")) from exc


def read_toml(path: Path) -> RawConfig:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"--config: cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"--config: {path} is not UTF-8 text (bad byte at offset {exc.start}); save it as UTF-8"
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config: {path} is not valid TOML: {exc}") from exc


def set_path(raw: RawConfig, dotted: str, value: object) -> None:
    """Set ``a.b.c`` in a nested raw tree, creating tables as needed (for flag overrides)."""
    *parents, leaf = dotted.split(".")
    node = raw
    for key in parents:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{key}: expected a table")
        node = child
    node[leaf] = value
