"""The Tk configurator. Imports schemas and the control client only."""
