"""SLOs, budgets, cost and release gates (built on derive)."""
