"""The dispatcher: one long-running task that drains the outbox through PTB's ``telegram.Bot``.

What it promises (design, Principle 2):

- **Limits in any sliding window**: at most 30 sends per second overall, 1 per second in a
  private chat, 20 per minute in a group (``scheduler.limiter``, measured from the end of each
  request so the rule also holds at Telegram's side). A 429 pauses *every* send for
  ``retry_after``.
- **Errors**: 403 (blocked, deactivated) and 400 "chat not found" mark the customer unreachable
  and the row failed for good; another 400 fails the row (Telegram will never accept it);
  timeouts, 5xx and network errors are retried with exponential backoff and jitter until
  ``retry.max_attempts``, then the row is dead (``carebot outbox dead``/``retry``).
- **Crash safety**: rows are claimed with a lease (``claimed_until``); a row is marked sent,
  with its Telegram message id, in one statement right after the API call returns. After a crash
  at any point every message is delivered, and only the sends that were on the wire (at most
  ``dispatch.concurrency``) can be delivered twice; rows claimed but not yet sent are claimed
  again once their lease runs out, or at once by the next dispatcher to take the lock.
- **One dispatcher per database** (``scheduler.locks``): the others stand by. The one that takes
  an exclusive lock reclaims the rows its predecessor left claimed, so a restart
  after a SIGKILL does not wait out the lease; the sends that were on the wire when it died may
  go out a second time, as they would after the lease. (A PostgreSQL holder that lost its lock
  connection but lives on notices within ``LOCK_CHECK_SECONDS``; what it starts meanwhile from
  its buffer may go twice too.)
- **Outcome hooks**: a feature can register ``OutcomeHooks`` for its outbox kinds (tickets do,
  to keep each lane in order); they run in the transaction that records a row's outcome.

Scheduling: claimed rows wait in a small in-memory buffer, at most ``HELD_PER_CHAT`` per chat,
sent one at a time per chat in the order claimed, a chat's next row only once the outcome of the
one before is written (a hook sees what those before it wrote; a crash repeats at most the one
send per chat that was on the wire); after a send that did not succeed, the chat's held rows are
given back first (the hook may take some back: a ticket lane's window). A claim
skips the chats that cannot take a message right now (one of theirs is in the buffer or on the
wire, or their window is full), so a chat with many queued messages neither holds up a
broadcast nor loses its place in the queue: its next row is claimed as soon as the chat is ready
again. A group holds no more rows than its window takes now: what would wait behind its limit
waits in the table, where the next claim takes the most urgent first (a topic's rename gives way
to a customer's copy). Hooks may ask how many more sends a chat takes now (``SeesRoom``: the
ticket desk merges a topic's queued texts when its group has none). With several dispatchers
(PostgreSQL, ``exclusive = false``) this per-chat pacing is per
process. Quiet hours, consent and the daily cap are judged per row when it is claimed
(``scheduler.policy``).

The package, split along its seams; each module imports only those before it:

- ``outcomes``: what a send comes to and writing it back: the counters, the ``OutcomeHooks``
  features register, the Bot API call a row became (``Request``) and what came of it
  (``Outcome``), recorded with the row's hook in one transaction (``OutcomeRecorder``);
- ``claims``: what a claim does with the rows it leased: the policy's verdicts, care-day
  slots, at most ``HELD_PER_CHAT`` rows per chat held, the rest given back;
- ``loop``: the scheduling loop (``DispatchLoop``): the lock, reclaiming, steps under the
  limiter, the held rows and their leases, the sends on the wire, shutdown;
- ``telegram``: a row's payload (``storage.payloads``) rendered into a Bot API call, the call
  made and Telegram's answer or error read into an ``Outcome`` (``BotApi``; an error becomes a
  ``storage.failures.SendFailure``, whose reason the hooks act on), and ``Dispatcher``, the
  loop bound to a ``telegram.Bot`` (``create_dispatcher``), which the bot, the tests and the
  benchmark start.

Why there: the Telegram side is what changes with PTB and the Bot API, and the layout keeps
``telegram`` at the edges (``tests.auxil.imports``: a module free of Telegram never imports one
with it), so it sits on top and the loop sees it only as a ``TelegramSide``; recording an
outcome is what features hook into and the same whatever the transport; sorting a claim is the
policy's business, apart from the loop's timing. Every module logs as ``scheduler.dispatcher``;
the package itself exports nothing (import a name from its module).
"""
