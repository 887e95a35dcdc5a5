"""devapi: the backend of the devapp example (standard library HTTP server + psycopg).

Run it with ``python -m devapi.server`` (what the container runs) or, while
developing, ``python -m devapi.dev`` (the same server, restarted when a .py file of
this package changes).
"""
