"""Service: tickets, SLA, satisfaction and the knowledge base. Needs the sales plugin
(tickets belong to customers); its entities arrive with the service issue."""

name = "service"
requires: tuple[str, ...] = ("sales",)
