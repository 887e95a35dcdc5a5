"""CI providers (providers.ci): GitHub Actions, through GitHub's REST API (github_api.py)."""
