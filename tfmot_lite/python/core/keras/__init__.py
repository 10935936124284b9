"""See `tfmot_lite/python/__init__.py`."""
