"""Queries on tickets, split by what they are about, so that each can be read on its own.

Functions take the session first and only flush; the caller owns the transaction. A ticket's
lanes are changed only after ``rows.lock_ticket``, which serialises everybody touching the same
ticket (handlers, the dispatcher's hooks, the SLA planner) on both databases.

Each module holds a seam of the desk's data and the words (constants) that go with it: the
statuses apart, as the rows, the SLA planner, the reports and the dashboard all read them.
Import names from the module that holds them (there is no re-export here); the desk imports
``lanes`` itself, as ``lanes.TOPIC`` and ``lanes.TITLE`` read apart from its own actions
(``handlers.tickets.desk.TITLE``):

- ``statuses``: a ticket's statuses, and those in which its SLA clocks run;
- ``rows``: the ticket rows: numbering, inserting, reading and locking, finding them (by
  customer, topic, number), whether a ticket may take a customer's message;
- ``purchases``: a customer's orders as the desk reads them (the card, the complaint flow);
- ``messages``: a ticket's history, and where a message came from and what became of it;
- ``lanes``: the delivery lanes (topic, title, customer) and their deliveries' states;
- ``drafts``: complaint drafts;
- ``staff``: staff members found by membership checks;
- ``bans``: banned customers;
- ``sla``: the SLA planner's candidates (reminders, escalations, closing unconfirmed tickets);
- ``reports``: ``carebot report tickets``;
- ``erasure``: ``/forget`` on the desk.

Inside the package ``rows``, ``sla`` and ``reports`` import ``statuses``, and ``erasure``
imports ``drafts`` and ``messages``; nothing else imports a sibling.
"""
