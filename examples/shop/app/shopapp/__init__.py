"""The shop example app: a small HTTP service (web) and a background worker.

Standard library only, so its image needs nothing but python3 on the base image.
"""
