"""A plugin that needs another one that is not there."""

name = "needy"
requires = ("fairs_extra",)
