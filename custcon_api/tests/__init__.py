"""Tests of the Customer Control API."""

import warnings

# Starlette 1.x warns at import that its TestClient wants httpx2; FastAPI's TestClient and
# our test dependency are httpx (pyproject `test` extra). Not our code's warning.
warnings.filterwarnings("ignore", message="Using `httpx` with `starlette", category=Warning)
