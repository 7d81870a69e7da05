"""Marketing: campaigns, leads, responses, care reminders and messages.

Loaded and listed like every plugin; its entities arrive with the marketing issue.
"""

name = "marketing"
requires: tuple[str, ...] = ()
