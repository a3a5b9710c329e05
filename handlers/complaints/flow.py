"""The complaint flow, free of Telegram: category, order, description, confirmation.

The flow's state is the customer's row in ``complaint_drafts`` (step, category, order and the
description's messages), written in the same transaction as the answer it follows. So a restart
resumes at the same step (``handlers.complaints.telegram`` loads the steps into PTB's
ConversationHandler), ``/cancel`` deletes the draft whole, and nothing half-made is ever seen
by staff: the ticket and its topic only appear when the customer confirms.

Every function returns a ``FlowResult``: what to answer and the step the conversation is in
afterwards (None: it ended). The caller owns the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.kernel.config import GeneralConfig
from bot.kernel.replies import Alert, Button, Reply, TextRef
from bot.kernel.texts import Markup
from handlers.onboarding.registration import Person, ensure_customer
from handlers.tickets.desk import SOURCE_COMPLAINT, Desk, Incoming, category_label
from handlers.tickets.lifecycle import add_customer_items, open_ticket
from storage import customers as customer_queries
from storage.models import ComplaintDraft, Customer, Order
from storage.tickets.bans import get_ban
from storage.tickets.drafts import delete_draft, get_draft, start_draft
from storage.tickets.purchases import customer_order, customer_order_by_reference, customer_orders
from storage.tickets.rows import open_ticket_of

STEP_CATEGORY = "category"
STEP_ORDER = "order"
STEP_DESCRIPTION = "description"
STEP_CONFIRM = "confirm"
STEPS = (STEP_CATEGORY, STEP_ORDER, STEP_DESCRIPTION, STEP_CONFIRM)

# Callback data: cf:cat:<code>, cf:order:<order id>, cf:skip, cf:done, cf:send, cf:cancel.
CB_FLOW = "cf:"
ORDER_REF_LIMIT = 64
DESCRIPTION_KINDS = ("text", "photo", "document", "voice", "video", "audio", "animation")


@dataclass(frozen=True)
class FlowResult:
    replies: list[Reply] = field(default_factory=list)
    step: str | None = None
    """The step the customer is at afterwards; None when the flow ended."""
    alert: Alert | None = None
    """A toast for a pressed button (instead of, or before, ``replies``)."""
    step_over: bool = False
    """The step whose buttons the customer saw is over (or ``replies`` bring its buttons
    afresh): the old buttons go, the pressed one's and ``retire``'s, and the draft remembers
    the new prompt (``storage.tickets.drafts.remember_prompt``)."""
    retire: int | None = None
    """The message whose step buttons go (the draft's ``prompt_message_id``)."""


@dataclass(frozen=True)
class _Before:
    """The step the customer was at, and the message with its buttons."""

    step: str | None
    prompt: int | None


def _before(draft: ComplaintDraft | None) -> _Before:
    return _Before(draft.step, draft.prompt_message_id) if draft else _Before(None, None)


def _step_over(before: _Before, result: FlowResult) -> FlowResult:
    """Mark a result that ends the step (or shows its buttons afresh): the old buttons go."""
    fresh_buttons = bool(result.replies and result.replies[-1].buttons)
    if not result.replies or (result.step == before.step and not fresh_buttons):
        return result
    return replace(result, step_over=True, retire=before.prompt)


def _category_buttons(desk: Desk, language: str) -> list[list[Button]]:
    buttons = [
        Button(
            "complaint_category_button",
            f"{CB_FLOW}cat:{category.code}",
            {"label": Markup(category.label(language))},
        )
        for category in desk.rules.categories
    ]
    return [buttons[index : index + 2] for index in range(0, len(buttons), 2)]


def _order_label(desk: Desk, order: Order) -> dict[str, object]:
    return {
        "reference": Markup(order.external_id),
        "date": order.placed_at.date().isoformat(),
        "amount": Markup(f"{order.amount_cents / 100:,.2f} {order.currency}"),
    }


async def start(
    session: AsyncSession, person: Person, desk: Desk, general: GeneralConfig, now: datetime
) -> FlowResult:
    """``/complaint``: a fresh draft and the categories; not for a customer who already has
    an open ticket (what they write goes there) nor for a banned one."""
    customer, _ = await ensure_customer(session, person, general, now)
    language = customer.language
    if await get_ban(session, customer.id) is not None:
        await delete_draft(session, customer.id)
        return FlowResult([Reply("ticket_banned_notice", language)])
    ticket = await open_ticket_of(session, customer.id)
    if ticket is not None:
        await delete_draft(session, customer.id)
        return FlowResult([Reply("complaint_already_open", language, {"number": ticket.number})])
    before = _before(await get_draft(session, customer.id))  # a complaint begun earlier
    await start_draft(session, customer.id, STEP_CATEGORY, now)
    menu = Reply(
        "complaint_choose_category",
        language,
        buttons=[
            *_category_buttons(desk, language),
            [Button("complaint_cancel_button", f"{CB_FLOW}cancel")],
        ],
    )
    return _step_over(before, FlowResult([menu], STEP_CATEGORY))


async def _draft_of(
    session: AsyncSession, user_id: int
) -> tuple[Customer | None, ComplaintDraft | None]:
    customer = await customer_queries.get_for_update(session, user_id)
    if customer is None:
        return None, None
    return customer, await get_draft(session, customer.id)


def _expired(customer: Customer | None, *, pressed: bool) -> FlowResult:
    language = customer.language if customer else "en"
    if pressed:
        return FlowResult(alert=Alert("button_expired", language))
    return FlowResult([Reply("complaint_expired", language)])


async def press(
    session: AsyncSession, user_id: int, data: str, desk: Desk, now: datetime
) -> FlowResult:
    """A button of the flow: a category, an order, skip, done, send or cancel."""
    customer, draft = await _draft_of(session, user_id)
    if customer is None or draft is None:
        return _expired(customer, pressed=True)
    before = _before(draft)
    return _step_over(before, await _press(session, customer, draft, data, desk, now))


async def _press(
    session: AsyncSession,
    customer: Customer,
    draft: ComplaintDraft,
    data: str,
    desk: Desk,
    now: datetime,
) -> FlowResult:
    action, _, value = data.removeprefix(CB_FLOW).partition(":")
    language = customer.language
    if action == "cancel":
        return await _cancel(session, customer)
    if action == "cat" and draft.step == STEP_CATEGORY:
        if desk.rules.category(value) is None:
            return FlowResult(alert=Alert("button_expired", language), step=draft.step)
        draft.category = value
        return await _ask_order(session, desk, customer, draft, now)
    if action == "order" and draft.step == STEP_ORDER and value.isdigit():
        order = await customer_order(session, customer.id, int(value))
        if order is None:
            return FlowResult(alert=Alert("button_expired", language), step=draft.step)
        draft.order_id, draft.order_ref = order.id, order.external_id
        return _ask_description(customer, draft, now)
    if action == "skip" and draft.step == STEP_ORDER:
        draft.order_id = draft.order_ref = None
        return _ask_description(customer, draft, now)
    if action == "done" and draft.step == STEP_DESCRIPTION:
        return _confirm_or_wait(desk, customer, draft, now)
    if action == "send" and draft.step == STEP_CONFIRM:
        return await _submit(session, desk, customer, draft, now)
    # A button from an earlier step (or an earlier complaint): harmless.
    return FlowResult(alert=Alert("button_expired", language), step=draft.step)


async def _ask_order(
    session: AsyncSession, desk: Desk, customer: Customer, draft: ComplaintDraft, now: datetime
) -> FlowResult:
    draft.step, draft.updated_at = STEP_ORDER, now
    limit = desk.rules.flow.recent_orders
    orders = await customer_orders(session, customer.id, limit) if limit else []
    rows = [
        [Button("complaint_order_button", f"{CB_FLOW}order:{order.id}", _order_label(desk, order))]
        for order in orders
    ]
    rows.append(
        [
            Button("complaint_skip_button", f"{CB_FLOW}skip"),
            Button("complaint_cancel_button", f"{CB_FLOW}cancel"),
        ]
    )
    key = "complaint_order_pick" if orders else "complaint_order_prompt"
    return FlowResult([Reply(key, customer.language, buttons=rows)], STEP_ORDER)


def _done_buttons() -> list[list[Button]]:
    return [
        [
            Button("complaint_done_button", f"{CB_FLOW}done"),
            Button("complaint_cancel_button", f"{CB_FLOW}cancel"),
        ]
    ]


def _ask_description(customer: Customer, draft: ComplaintDraft, now: datetime) -> FlowResult:
    draft.step, draft.updated_at = STEP_DESCRIPTION, now
    return FlowResult(
        [Reply("complaint_describe", customer.language, buttons=_done_buttons())],
        STEP_DESCRIPTION,
    )


def _confirm_or_wait(
    desk: Desk, customer: Customer, draft: ComplaintDraft, now: datetime
) -> FlowResult:
    """ "Done": the summary with send / cancel, unless nothing was described yet."""
    language = customer.language
    if not draft.items:
        return FlowResult(
            [Reply("complaint_empty", language, buttons=_done_buttons())], STEP_DESCRIPTION
        )
    draft.step, draft.updated_at = STEP_CONFIRM, now
    category = draft.category or "other"
    order = draft.order_ref or None
    return FlowResult(
        [
            Reply(
                "complaint_confirm",
                language,
                {
                    "category": category_label(desk, category, language),
                    "order": order if order else TextRef("complaint_no_order"),
                    "count": len(draft.items),
                },
                buttons=[
                    [
                        Button("complaint_send_button", f"{CB_FLOW}send"),
                        Button("complaint_cancel_button", f"{CB_FLOW}cancel"),
                    ]
                ],
            )
        ],
        STEP_CONFIRM,
    )


async def _submit(
    session: AsyncSession, desk: Desk, customer: Customer, draft: ComplaintDraft, now: datetime
) -> FlowResult:
    """ "Send": the ticket opens with the description; its topic is queued."""
    items = [_incoming(customer, item) for item in draft.items]
    category = draft.category or "other"
    ticket, opened = await open_ticket(
        session,
        desk,
        customer,
        source=SOURCE_COMPLAINT,
        category=category,
        now=now,
        order_id=draft.order_id,
        order_ref=draft.order_ref,
        items=items,
    )
    if not opened:  # another ticket opened meanwhile: the description joins it
        await add_customer_items(session, desk, ticket, items, now)
    await delete_draft(session, customer.id)
    said = desk.answer_promise("complaint_opened")  # honest while no staff group is connected
    return FlowResult([Reply(said, customer.language, {"number": ticket.number})])


def _incoming(customer: Customer, item: dict[str, object]) -> Incoming:
    def text_of(key: str) -> str | None:
        value = item.get(key)
        return str(value) if value is not None else None

    message_id = item.get("message_id")
    return Incoming(
        chat_id=customer.chat_id or 0,
        message_id=int(message_id) if isinstance(message_id, int) else 0,
        kind=str(item.get("kind") or "text"),
        text=text_of("text"),
        html=text_of("html"),
        media_group_id=text_of("media_group_id"),
        file_id=text_of("file_id"),
    )


async def _cancel(session: AsyncSession, customer: Customer) -> FlowResult:
    await delete_draft(session, customer.id)
    return FlowResult([Reply("complaint_cancelled", customer.language)])


async def cancel(session: AsyncSession, user_id: int, now: datetime) -> FlowResult:
    """``/cancel`` at any step: the draft goes, nothing is left."""
    customer, draft = await _draft_of(session, user_id)
    if customer is None:
        return FlowResult([Reply("complaint_cancelled", "en")])
    before = _before(draft)
    return _step_over(before, await _cancel(session, customer))


async def done(session: AsyncSession, user_id: int, desk: Desk, now: datetime) -> FlowResult:
    """``/done`` typed instead of pressing the button."""
    customer, draft = await _draft_of(session, user_id)
    if customer is None or draft is None:
        return _expired(customer, pressed=False)
    if draft.step != STEP_DESCRIPTION:
        return _remind(customer, draft)
    before = _before(draft)
    return _step_over(before, _confirm_or_wait(desk, customer, draft, now))


def _remind(customer: Customer, draft: ComplaintDraft) -> FlowResult:
    key = {
        STEP_CATEGORY: "complaint_pick_category_first",
        STEP_ORDER: "complaint_order_prompt",
        STEP_CONFIRM: "complaint_press_button",
    }.get(draft.step, "complaint_describe")
    buttons = _done_buttons() if draft.step == STEP_DESCRIPTION else []
    return FlowResult([Reply(key, customer.language, buttons=buttons)], draft.step)


async def message(
    session: AsyncSession, user_id: int, item: Incoming, desk: Desk, now: datetime
) -> FlowResult:
    """A message during the flow: the order number at the order step, part of the description
    at the description step, else a reminder of what the step expects."""
    customer, draft = await _draft_of(session, user_id)
    if customer is None or draft is None:
        return _expired(customer, pressed=False)
    before = _before(draft)
    return _step_over(before, await _message(session, customer, draft, item, desk, now))


async def _message(
    session: AsyncSession,
    customer: Customer,
    draft: ComplaintDraft,
    item: Incoming,
    desk: Desk,
    now: datetime,
) -> FlowResult:
    language = customer.language
    if draft.step == STEP_ORDER and item.kind == "text":
        reference = (item.text or "").strip()
        if not reference or len(reference) > ORDER_REF_LIMIT:
            return FlowResult([Reply("complaint_order_invalid", language)], STEP_ORDER)
        order = await customer_order_by_reference(session, customer.id, reference)
        draft.order_id = order.id if order else None
        draft.order_ref = order.external_id if order else reference
        return _ask_description(customer, draft, now)
    if draft.step != STEP_DESCRIPTION:
        return _remind(customer, draft)
    if item.kind not in DESCRIPTION_KINDS:
        return FlowResult(
            [Reply("complaint_unsupported", language, buttons=_done_buttons())], STEP_DESCRIPTION
        )
    items = list(draft.items)
    first_of_album = not item.media_group_id or all(
        existing.get("media_group_id") != item.media_group_id for existing in items
    )
    items.append(
        {
            "message_id": item.message_id,
            "kind": item.kind,
            "text": item.text,
            "html": item.html,
            "media_group_id": item.media_group_id,
            "file_id": item.file_id,
        }
    )
    draft.items = items
    draft.updated_at = now
    limit = desk.rules.flow.max_description_items
    if len(items) >= limit:
        full = Reply("complaint_full", language, {"limit": limit})
        result = _confirm_or_wait(desk, customer, draft, now)
        return FlowResult([full, *result.replies], result.step)
    if not first_of_album:  # one acknowledgement per album
        return FlowResult([], STEP_DESCRIPTION)
    return FlowResult(
        [Reply("complaint_added", language, {"count": len(items)}, buttons=_done_buttons())],
        STEP_DESCRIPTION,
    )
