"""Telling a job's owner that it finished, through one or more channels (email today)."""
