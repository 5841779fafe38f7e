"""Chrysalis Forge reference trainer (DESIGN.md §6 "Trainer contract")."""

__version__ = "0.1.0"
