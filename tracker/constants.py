"""Values more than one module needs, defined once (no imports: cheap for the CLI)."""

from __future__ import annotations

from typing import Final

GOOGLE_CERTS_URL: Final = "https://www.googleapis.com/oauth2/v1/certs"
"""Where Google publishes the certificates that sign its ID tokens (PEM by key id)."""
