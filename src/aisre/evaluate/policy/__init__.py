"""Agent guardrails as policy-as-code: versioned policy files, one evaluator used inline and
over traces, decision records and violations (issue 18)."""
