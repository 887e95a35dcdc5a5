"""Texts the API serves. Edit GREETING while `python -m devapi.dev` runs: the next
GET /api/hello answers with the new text."""

GREETING = "hello from the backend"
