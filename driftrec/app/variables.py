"""One environment variable as :mod:`driftrec.app.declarations` declares it: its type, default,
bounds or choices, meaning, and how a raw value is parsed and shown (secrets masked)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import checks
from .checks import ConfigError, redact


@dataclass(frozen=True)
class Var:
    """One environment variable: where it goes in :class:`Settings` and what it may hold.

    ``kind`` is ``int``, ``float``, ``bool``, ``choice`` or ``str``; ``check`` validates a
    ``str`` (and says what is allowed in ``allowed``). ``service_default``: the default of
    the Kafka services (``driftrec scorer|learner``) where it differs. ``flag``: the
    command-line flag that overrides it, if any.
    """

    name: str
    field: str
    kind: str
    default: Any
    help: str
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] = ()
    check: Callable[[str], Any] | None = None
    allowed_text: str = ""
    service_default: Any = None
    flag: str | None = None
    secret: bool = False
    lo_open: bool = False

    @property
    def allowed(self) -> str:
        if self.allowed_text:
            return self.allowed_text
        if self.kind == "bool":
            return "1, 0, true, false, yes, no"
        if self.kind == "choice":
            return ", ".join(self.choices)
        if self.kind in ("int", "float"):
            what = "an integer" if self.kind == "int" else "a number"
            if self.lo is not None and self.lo_open:
                return f"{what} > {_num(self.lo)}" + (
                    f" and <= {_num(self.hi)}" if self.hi is not None else ""
                )
            if self.lo is not None and self.hi is not None:
                return f"{what} from {_num(self.lo)} to {_num(self.hi)}"
            if self.lo is not None:
                return f"{what} >= {_num(self.lo)}"
            return what
        return "any text"

    def parse(self, raw: str, label: str | None = None) -> Any:
        """The typed value of ``raw``; :class:`ConfigError` (one line) if it is not allowed."""
        try:
            return self.value(raw)
        except ValueError as exc:
            raise ConfigError(
                f"{label or self.name}={self.shown(raw)!r}: {exc}; allowed: {self.allowed}"
            ) from None

    def shown(self, raw: str) -> str:
        """How a value appears in a message: a secret that is not a URL (a key) never does;
        a URL's password is masked before the message is built (:func:`checks.redact_url`)."""
        if self.secret:
            return checks.redact_url(raw) if "://" in raw else "***"
        return redact(raw)

    def value(self, raw: str) -> Any:
        """The typed value of ``raw``, or :class:`ValueError` saying what is wrong with it."""
        raw = raw.strip()
        if self.kind == "bool":
            return checks.bool_value(raw)
        if self.kind == "choice":
            if raw not in self.choices:
                raise ValueError("not one of the choices")
            return raw
        if self.kind in ("int", "float"):
            try:
                v: Any = int(raw) if self.kind == "int" else float(raw)
            except ValueError:
                raise ValueError("not an integer" if self.kind == "int" else "not a number") from None
            low = self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo)
            if v != v or low or (self.hi is not None and v > self.hi) or v in (float("inf"), float("-inf")):
                raise ValueError("out of range")
            return v
        return self.check(raw) if self.check else raw


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)
