"""aisre: one error budget per user journey, with the model layer inside it."""

__version__ = "0.1.0"
