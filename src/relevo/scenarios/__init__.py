"""Scenarios: the seed's experiment and the failures it never tried, on a timeline, measured."""
