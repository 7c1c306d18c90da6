"""The Customer Control API (FastAPI) and portal; it imports `cloudpbx` only.

`create_app(session_factory, clock=...)` builds the application over the config store's
SQLAlchemy session factory (`custcon_api.main`); `python -m custcon_api` serves it with
uvicorn (`custcon_api.__main__`).
"""

from custcon_api.main import create_app
from custcon_api.settings import CustconSettings

__all__ = ["CustconSettings", "create_app"]
