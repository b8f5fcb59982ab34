"""Tests of the demo simulator."""
