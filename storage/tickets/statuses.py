"""A ticket's statuses, and those in which its SLA clocks run: the words the ticket rows, the SLA
planner, the reports and the dashboard share (no queries here)."""

from __future__ import annotations

OPEN = "open"
WAITING_STAFF = "waiting_staff"
WAITING_CUSTOMER = "waiting_customer"
RESOLVED = "resolved"
CLOSED = "closed"
STATUSES = (OPEN, WAITING_STAFF, WAITING_CUSTOMER, RESOLVED, CLOSED)
WAITING = (WAITING_STAFF, WAITING_CUSTOMER)
"""A conversation under way: whoever owes the next word."""
SLA_RUNNING = (OPEN, WAITING_STAFF, WAITING_CUSTOMER)
"""Statuses in which the SLA clocks run (staff owe an answer or a resolution)."""
