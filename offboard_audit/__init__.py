"""offboard-audit: people who leave lose every credential they held."""

__version__ = "0.1.0"
