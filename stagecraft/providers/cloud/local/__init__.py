"""The ``local`` cloud: DigitalOcean-like hosts made of containers on this machine's Docker."""
