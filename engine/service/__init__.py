"""The service: supervisor, supervised tasks, logs, single instance."""
