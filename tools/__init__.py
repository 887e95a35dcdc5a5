"""Tooling for working on stagecraft itself (run from the repository root).

Not part of the stagecraft package: the wheel does not carry it, and stagecraft
never imports it.
"""
