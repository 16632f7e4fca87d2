"""Intake: from the files test equipment writes to reports durable in the spool."""
