"""guard: a voice-command firewall for smart homes."""

from guard.errors import AudioError, ConfigError, GuardError, ModelError

__all__ = ["AudioError", "ConfigError", "GuardError", "ModelError"]
__version__ = "0.1.0"
