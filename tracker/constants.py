"""Values more than one module needs, defined once (no imports: cheap for the CLI)."""

from __future__ import annotations

from typing import Final

GOOGLE_CERTS_URL: Final = "https://www.googleapis.com/oauth2/v1/certs"
"""Where Google publishes the certificates that sign its ID tokens (PEM by key id)."""

DEFAULT_URL: Final = "http://127.0.0.1:8080"
"""Where the SDK and the CLI find the tracker unless told otherwise (./scripts/run)."""

MAX_SEQUENCE: Final = 2**63 - 1
"""The largest sequence number (int64 max, as proto and Spanner hold it)."""

DEFAULT_MAX_WAIT_SECONDS: Final = 300.0
"""The longest WaitOperation the server holds unless --max-wait-seconds says otherwise."""
