"""Campaigns: engagement profiles, templates, campaigns and their launch."""
