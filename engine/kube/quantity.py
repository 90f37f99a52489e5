"""Kubernetes resource quantities (`512Mi`, `1.5`, `250m`) to and from the Engine API's integers."""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1), "k": Decimal(10**3),
            "M": Decimal(10**6), "G": Decimal(10**9), "T": Decimal(10**12), "P": Decimal(10**15),
            "E": Decimal(10**18)}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")


class QuantityError(ValueError):
    pass


def parse(value: object) -> Decimal:
    """A quantity as an exact decimal number of base units (bytes, cores)."""
    if isinstance(value, bool):
        raise QuantityError(f"{value!r} is not a quantity")
    if isinstance(value, int | float):
        return Decimal(str(value))
    m = _QUANTITY.match(str(value).strip())
    if not m:
        raise QuantityError(f"{value!r} is not a quantity (like 512Mi, 1G, 500m, 2)")
    try:
        number = Decimal(m.group(1))
    except InvalidOperation as e:
        raise QuantityError(f"{value!r} is not a quantity") from e
    suffix = m.group(2) or ""
    return number * (_BINARY[suffix] if suffix in _BINARY else _DECIMAL[suffix])


def bytes_of(value: object) -> int:
    return math.ceil(parse(value))


def nanocpus_of(value: object) -> int:
    return math.ceil(parse(value) * 10**9)


def memory(n: int) -> str:
    """Bytes as the largest binary suffix that divides them exactly, as kubectl prints them."""
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        if n % _BINARY[suffix] == 0 and n >= _BINARY[suffix]:
            return f"{n // _BINARY[suffix]}{suffix}"
    return str(n)


def cpu(nanocpus: int) -> str:
    """Nano-CPUs as whole cores or millicores (Kubernetes' finest CPU unit; finer rounds up)."""
    if nanocpus % 10**9 == 0:
        return str(nanocpus // 10**9)
    return f"{math.ceil(nanocpus / 10**6)}m"
