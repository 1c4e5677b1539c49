"""Measurements of the paper: complexity, shortcut ratio, masking and step-dropping ablations, speed."""
