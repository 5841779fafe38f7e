"""Chrysalis Forge reference trainer (docs/architecture.md §6 "Trainer contract")."""

__version__ = "0.1.0"
