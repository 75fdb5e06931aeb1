"""``mcep demo``: the whole platform on the embedded default, against the sandbox."""
