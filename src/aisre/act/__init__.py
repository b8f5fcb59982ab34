"""Alerts, incidents and notifications (built on evaluate)."""
