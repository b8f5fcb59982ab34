"""The store contract: what every backend must answer, fed from the captured fixtures."""
