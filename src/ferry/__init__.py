"""ferry: send a file through a blind relay, protected by a short code."""

__version__ = "0.1.0"
