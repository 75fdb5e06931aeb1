"""A faithful stand-in for the four providers' APIs, with a configurable behaviour model."""
