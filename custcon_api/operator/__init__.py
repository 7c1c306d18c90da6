"""Operator-only maintenance endpoints."""
