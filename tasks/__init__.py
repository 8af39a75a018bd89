"""Prefect tasks: thin wrappers over mmpipe library functions and the warehouse."""
