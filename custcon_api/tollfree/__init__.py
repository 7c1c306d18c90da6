"""Toll-free numbers (`/api/v1/tollfree-numbers`): contracts, distribution, channels,
schedules, after-hours announcement, designated areas and account grants (PRODUCT.md
Part A). Endpoints in `router`, the rules in `service`, bodies in `schemas`."""
