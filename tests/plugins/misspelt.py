"""A plugin with a misspelt hook name: loading it must fail, not silently ignore it."""

from guanxi.engine import hookimpl

name = "misspelt"


@hookimpl
def register_entites(register):  # sic
    pass
