"""The durable spool: one directory per report state, moved only by the report machine's triggers."""
