"""`stagecraft dev`: the app on this machine, with its infra in containers, its dev
servers supervised and Traefik in front over HTTPS (spec/cli/dev.md)."""
