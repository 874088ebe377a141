"""tracker: event-driven tracking of google.longrunning Operations (AIP-151)."""

__version__ = "0.1.0"
