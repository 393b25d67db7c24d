"""The narrow exception types guard raises; each message is one line naming the culprit."""

from __future__ import annotations


class GuardError(Exception):
    """Base class of every error guard reports to a user as one line."""


class AudioError(GuardError):
    """An audio file or stream that cannot be read (names the file)."""


class ModelError(GuardError):
    """A model file that is missing, fails its SHA-256 check, or does not fit guard."""


class RuntimeMissingError(ModelError):
    """No TFLite runtime is installed."""


class ConfigError(GuardError):
    """A config key or value that is wrong (names the key path)."""
