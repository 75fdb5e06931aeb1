"""Provider adapters behind one protocol."""
