"""Runners: the processes that own a loop (learner, and later training and evaluation runners)."""
