"""llm-router: decide which model should answer each chat request."""

__version__ = "0.1.0"
