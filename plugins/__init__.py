"""The business plugins shipped with guanxi; each is registered through the ``guanxi``
entry-point group exactly like a third-party plugin."""
