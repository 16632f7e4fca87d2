"""Pure pydantic models: config, WSJF report, machine definitions, control messages. No I/O."""
