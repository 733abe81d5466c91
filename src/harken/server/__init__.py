"""The HTTP front door: `create_app(settings)` builds the FastAPI app `harken serve` runs."""

from harken.server.app import create_app

__all__ = ["create_app"]
