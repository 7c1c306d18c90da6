"""The domain model and shared config store (tenants, extensions, trunks, toll-free numbers).

Filled in by the registrar/B2BUA issue; this package never imports `softswitch` or
`custcon_api`.
"""
