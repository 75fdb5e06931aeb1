"""Inbound provider traffic: verified webhooks, status updates, replies and opt-outs."""
