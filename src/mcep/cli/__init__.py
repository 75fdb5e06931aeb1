"""The ``mcep`` command line."""
