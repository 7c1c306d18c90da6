"""The Customer Control API (FastAPI) and portal; it imports `cloudpbx` only."""
