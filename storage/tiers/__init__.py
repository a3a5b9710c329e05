"""RFM scores, tiers, lifecycle stages and churn signals, computed in set-based SQL.

A run is a handful of ``INSERT ... SELECT`` / ``UPDATE ... FROM`` statements over every customer
(full run) or over the customers whose orders changed (incremental run); no Python loop over
customers. The same SQL runs on SQLite and PostgreSQL; where they differ (the median, the
quintile edges, null-safe comparison, session tuning, locking) the difference sits in one small
function.

Days are integers (days since 1970-01-01 in the shop's time zone, ``orders.placed_day``), so
recency and windows are integer arithmetic and both databases give the same numbers.

What a customer's orders say (first and last order, count, median gap between orders, orders and
spend in the frequency window and the two churn periods) is kept in ``rfm_scores`` and kept
current: recomputed from the orders for the customers whose orders changed, and brought forward
day by day for the rest. Every full run then scores, tiers, stages and flags every customer
again with new quintile boundaries, and writes only what changed.

The modules follow the seams of that work, so that each can be read on its own: the plain
values callers build and read; the steps of a run, in the order a run executes them, each
writing one part of ``rfm_scores`` or ``customers``; and the reads and writes outside runs,
split by who uses them. Import names from the module that holds them (there is no re-export
here):

- ``spec``: day numbers, the run specification, thresholds, run summary, stages, churn flags;
- ``runs``: ``recompute``, the run lock, ``last_run``, the "satisfaction falling" flag;
- ``statistics``: a run's first step, order statistics and window counts;
- ``scoring``: the second, quintile thresholds and the classifying SQL;
- ``changes``: the last, tier and stage changes copied to customers and tier history;
- ``context`` and ``dialect``: what the steps share (the run's state; SQLite vs PostgreSQL);
- ``pending``: the queue of customers whose orders changed;
- ``pins``: staff pinning and unpinning a tier;
- ``cards``: finding a customer and their tier card (CLI, customer card);
- ``report``: the tiers report (``carebot report tiers``, the dashboard).
"""
