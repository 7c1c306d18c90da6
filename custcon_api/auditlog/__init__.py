"""Reading the audit log: who changed what, when, from what to what."""
