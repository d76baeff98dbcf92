"""Probes of adversarial models and users (issue 15): each keeps a failure from coming back."""
