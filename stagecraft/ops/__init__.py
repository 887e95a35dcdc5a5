"""Operator commands' core: status, logs, ssh/exec, audit and the deploy lock.

Each module holds the pure parts (argv building, merging, formatting) and the
few functions that talk to hosts; the CLI modules in stagecraft/cli/ stay thin.
"""
