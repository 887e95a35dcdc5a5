"""Twins: faithful local stand-ins of services stagecraft talks to that cannot be
reached from the machines it is built and tested on. stagecraft never imports them;
it starts them as processes."""
