"""A twin of DigitalOcean's API v2 whose droplets are real machines on this one.

See spec/providers/digitalocean-twin.md. Run: ``python -m stagecraft_twins.digitalocean``.
"""
