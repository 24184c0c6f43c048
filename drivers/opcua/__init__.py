"""The OPC UA driver: :class:`OpcUaMachine` and its parts (addressing, session, values, profiles)."""

from .machine import OpcUaMachine

__all__ = ["OpcUaMachine"]
