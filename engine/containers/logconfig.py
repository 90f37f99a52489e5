"""HostConfig.LogConfig as dockerd checks and applies it: the log drivers this engine has, their options, and
Docker's texts for what is refused.

Drivers: `json-file` (the default), `local` (Docker keeps it in its own binary format; here the same json lines,
which only `docker logs` reads, with local's rotation defaults of 20 MB x 5 files) and `none` (nothing written;
`docker logs` says the driver cannot be read). Like dockerd, the driver and option names are checked at create
(moby's `ValidateLogOpts`, a 400), the option values when the logger starts, i.e. at each start (the driver's
`New`, a 500 "failed to create task for container: failed to initialize logging driver: ...").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from engine.errors import EngineError, InvalidArgument

DEFAULT_DRIVER = "json-file"
DRIVERS = ("json-file", "local")  # registered drivers, as /info lists them; "none" is not one (moby neither)
READABLE = ("json-file", "local")

_COMMON_OPTS = ("labels", "labels-regex", "env", "env-regex", "tag")
_OPTS = {
    "json-file": ("max-file", "max-size", "compress", *_COMMON_OPTS),
    "local": ("max-file", "max-size", "compress", *_COMMON_OPTS),
}
_BUILT_IN_OPTS = ("mode", "max-buffer-size")  # every driver's (the log copier's), not checked by the driver
_LOCAL_MAX_SIZE = 20 * 1024 * 1024
_LOCAL_MAX_FILE = 5

# go-units' FromHumanSize (decimal multiples, as json-file's max-size is read)
_SIZE = re.compile(r"^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$")
_DECIMAL = {"k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15}
_BINARY = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_ATOI = re.compile(r"^[+-]?\d+$")
_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def _size(value: str, units: dict[str, int]) -> int:
    m = _SIZE.match(value)
    if not m:
        raise ValueError(f"invalid size: '{value}'")
    try:
        n = float(m.group(1))
    except ValueError:
        raise ValueError(f'strconv.ParseFloat: parsing "{m.group(1)}": invalid syntax') from None
    return int(n * units.get((m.group(2) or "").lower(), 1))


def from_human_size(value: str) -> int:
    """go-units' FromHumanSize: "10m" is 10,000,000; ValueError with its text."""
    return _size(value, _DECIMAL)


def ram_in_bytes(value: str) -> int:
    """go-units' RAMInBytes: "10m" is 10 MiB."""
    return _size(value, _BINARY)


def _atoi(value: str) -> int:
    if not _ATOI.match(value):
        raise ValueError(f'strconv.Atoi: parsing "{value}": invalid syntax')
    return int(value)


def _parse_bool(value: str) -> bool:
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f'strconv.ParseBool: parsing "{value}": invalid syntax')


def normalize(log_config: dict[str, Any] | None) -> dict[str, Any]:
    """LogConfig checked at create and with dockerd's defaults filled in: `{"Type", "Config"}`. InvalidArgument
    with moby's ValidateLogOpts texts."""
    lc = dict(log_config or {})
    driver = lc.get("Type") or DEFAULT_DRIVER
    opts = {str(k): str(v) for k, v in (lc.get("Config") or {}).items()}
    out = {"Type": driver, "Config": opts}
    if driver == "none":
        return out
    mode = opts.get("mode", "")
    if mode not in ("", "blocking", "non-blocking"):
        raise InvalidArgument(f"logger: logging mode not supported: {mode}")
    if "max-buffer-size" in opts:
        if mode != "non-blocking":
            raise InvalidArgument("logger: max-buffer-size option is only supported with 'mode=non-blocking'")
        try:
            ram_in_bytes(opts["max-buffer-size"])
        except ValueError as e:
            raise InvalidArgument(f"error parsing option max-buffer-size: {e}") from None
    if driver not in DRIVERS:
        raise InvalidArgument(f"logger: no log driver named '{driver}' is registered")
    known = _OPTS[driver]
    for key in opts:
        if key in _BUILT_IN_OPTS or key in known:
            continue
        if driver == "json-file":
            raise InvalidArgument(f"unknown log opt '{key}' for json-file log driver")
        raise InvalidArgument(f"unknown log opt '{key}' for log driver {driver}")
    return out


@dataclass(frozen=True)
class LogFile:
    """What the supervisor writes: nothing unless `enabled`; rotation at max_size (None: never), max_file files."""

    enabled: bool
    max_size: int | None
    max_file: int


def _start_error(detail: str) -> EngineError:
    return EngineError(f"failed to create task for container: failed to initialize logging driver: {detail}")


def log_file(log_config: dict[str, Any] | None) -> LogFile:
    """The log a start writes, from the option values as the driver's New reads them; EngineError (dockerd's
    500 at start) for a value it refuses."""
    lc = log_config or {}
    driver = lc.get("Type") or DEFAULT_DRIVER
    opts = lc.get("Config") or {}
    if driver == "none":
        return LogFile(False, None, 1)
    if driver == "local":
        return _local(opts)
    max_size: int | None = None
    if "max-size" in opts:
        try:
            max_size = from_human_size(opts["max-size"])
        except ValueError as e:
            raise _start_error(str(e)) from None
        if max_size <= 0:
            raise _start_error("max-size must be a positive number")
    max_file = 1
    if "max-file" in opts:
        try:
            max_file = _atoi(opts["max-file"])
        except ValueError as e:
            raise _start_error(str(e)) from None
        if max_file < 1:
            raise _start_error("max-file cannot be less than 1")
    if "compress" in opts:
        try:
            compress = _parse_bool(opts["compress"])
        except ValueError as e:
            raise _start_error(str(e)) from None
        if compress and (max_file == 1 or max_size is None):
            raise _start_error("compress cannot be true when max-file is less than 2 or max-size is not set")
    return LogFile(True, max_size, max_file)


def _local(opts: dict[str, str]) -> LogFile:
    max_size, max_file = _LOCAL_MAX_SIZE, _LOCAL_MAX_FILE
    if "max-size" in opts:
        try:
            max_size = from_human_size(opts["max-size"])
        except ValueError as e:
            raise _start_error(f"invalid value for max-size: {opts['max-size']}: {e}") from None
    if "max-file" in opts:
        try:
            max_file = _atoi(opts["max-file"])
        except ValueError as e:
            raise _start_error(f"error reading max-file value: {opts['max-file']}: {e}") from None
    if "compress" in opts:
        try:
            _parse_bool(opts["compress"])
        except ValueError as e:
            raise _start_error(f"error reading compress log option: {e}") from None
    if max_size < 0:
        raise _start_error("max size should be a positive number")
    if max_file < 0:
        raise _start_error("max file count cannot be less than 0")
    # local's 0 means no limit
    return LogFile(True, max_size or None, max_file or 1)
