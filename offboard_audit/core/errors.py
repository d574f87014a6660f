"""Exceptions shared by the core and the connectors."""

from __future__ import annotations


class OffboardError(Exception):
    """Base class for errors this tool reports to users."""


class ConfigError(OffboardError):
    """A configuration or usage problem (CLI exit code 2).

    ``key`` names the offending config key as a dotted path (``sources[2].url``) and
    ``line`` its line in the config file when it is known.
    """

    def __init__(self, message: str, key: str | None = None, line: int | None = None) -> None:
        self.message = message
        self.key = key
        self.line = line
        super().__init__(self.__str__())

    def with_location(self, key: str | None = None, line: int | None = None) -> ConfigError:
        return ConfigError(self.message, key or self.key, line if line is not None else self.line)

    def __str__(self) -> str:
        where = ""
        if self.key:
            where = f"{self.key}: "
        if self.line is not None:
            where = f"line {self.line}: {where}"
        return f"{where}{self.message}"


class SourceError(OffboardError):
    """A source could not be read (unreachable, denied, empty HR feed). The source is *failed*."""


class RevokeError(OffboardError):
    """A revocation could not be applied or verified."""


class TargetChanged(RevokeError):
    """The object a planned action names is no longer the one it was planned for.

    Raised by a revoker that re-reads the target's immutable identity (``Account.uid``) and
    finds another one, or none: nothing is changed, and the engine records ``target-changed``.
    """
