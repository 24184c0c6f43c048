"""The OPC UA machine driver; it lives in :mod:`anycell.drivers.opcua` (split by concern)."""

from .opcua.machine import OpcUaMachine
from .opcua.session import der, fingerprint

__all__ = ["OpcUaMachine", "der", "fingerprint"]
