"""The OPC UA driver's own failures; each is an :class:`anycell.errors.DriverError` with a hint."""

from __future__ import annotations

from anycell.errors import ConnectionLost, DriverError


class ServerMismatch(ConnectionLost):
    """The server answering is not the one configured (a namespace is gone, the certificate changed).

    Retrying cannot help, so the driver stops reconnecting and says so on health.
    """


class LoginRefused(ConnectionLost):
    """The server refused the user identity (user name/password or user certificate)."""


class NotTrusted(DriverError):
    """The server's certificate is not in ``trusted_server_certificates``."""
