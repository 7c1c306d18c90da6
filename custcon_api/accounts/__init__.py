"""A tenant's Customer Control accounts (`/api/v1/tenants/{tenant}/accounts`)."""
