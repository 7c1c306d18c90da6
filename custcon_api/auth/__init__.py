"""Login, logout, the caller's own account and password change (`/api/v1/auth`, `/me`)."""
