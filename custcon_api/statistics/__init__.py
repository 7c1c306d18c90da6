"""Traffic statistics of toll-free numbers (`/api/v1/tollfree-numbers/{number}/statistics`):
hourly and daily counts per category, as JSON or CSV (seed 000, 利用状況(トラヒック)の照会).
The endpoint in `router`, the rules in `service`, the JSON body in `schemas`."""
