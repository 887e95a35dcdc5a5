"""stagecraft: plan a release, render per-host files, and roll it out with Ansible."""

__version__ = "0.1.0"
