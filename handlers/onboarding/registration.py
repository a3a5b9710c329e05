"""Onboarding and profile rules, free of Telegram: plain values and a session in, replies out.

The caller owns the transaction (one per update); these functions only ``flush``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.kernel.config import GeneralConfig, is_time_zone
from bot.kernel.replies import Alert, Button, Keyboard, Reply, TextRef
from bot.kernel.texts import LANGUAGES, language_from_code
from handlers.onboarding import linking, privacy
from handlers.onboarding.birthdays import Birthday, BirthdayError, check_birthday, parse_birthday
from handlers.tickets.desk import Desk
from storage import care as care_queries
from storage import customers as customer_queries
from storage.models import Customer

AWAITING_BIRTHDAY = "birthday"
AWAITING_TIMEZONE = "timezone"

# Callback data. Anything else (an old keyboard from a previous version) is answered as expired.
CB_LANGUAGE = "lang:"
CB_CONSENT = "consent:"
CB_PROFILE = "profile:"
CB_FORGET = "forget:"


@dataclass(frozen=True)
class Person:
    """Who wrote, as Telegram describes them."""

    user_id: int
    chat_id: int
    first_name: str
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = None

    @property
    def display_name(self) -> str:
        return " ".join(part for part in (self.first_name, self.last_name) if part)


def _local_today(customer: Customer, now: datetime) -> date:
    return now.astimezone(ZoneInfo(customer.timezone)).date()


async def ensure_customer(
    session: AsyncSession, person: Person, rules: GeneralConfig, now: datetime
) -> tuple[Customer, bool]:
    """The customer for this Telegram user, registered on first contact; True if new."""
    customer = await customer_queries.get_for_update(session, person.user_id)
    if customer is not None:
        if not customer.reachable:  # they wrote, so they unblocked the bot
            customer.reachable = True
            customer.updated_at = now
        return customer, False
    default_language = rules.customers.default_language
    language = (
        language_from_code(person.language_code) if person.language_code else default_language
    )
    inserted = await customer_queries.insert_if_absent(
        session,
        {
            "telegram_user_id": person.user_id,
            "chat_id": person.chat_id,
            "name": person.display_name,
            "username": person.username,
            "language": language,
            "timezone": rules.customers.default_timezone,
            "country": rules.customers.default_country,
            "created_at": now,
            "updated_at": now,
        },
    )
    customer = await customer_queries.get_for_update(session, person.user_id)
    if customer is None:  # pragma: no cover - the row was just inserted or already there
        raise RuntimeError("customer vanished during registration")
    if inserted:
        await customer_queries.link_inbound_to_customer(session, customer.id, person.user_id)
    return customer, inserted


def _confirm_buttons(prefix: str, yes_key: str, no_key: str) -> list[list[Button]]:
    """One row of two buttons answering ``prefix:yes`` / ``prefix:no``."""
    return [[Button(yes_key, f"{prefix}yes"), Button(no_key, f"{prefix}no")]]


def _consent_question(customer: Customer) -> Reply:
    buttons = _confirm_buttons(CB_CONSENT, "consent_yes_button", "consent_no_button")
    return Reply("consent_question", customer.language, buttons=buttons)


async def start(
    session: AsyncSession,
    person: Person,
    rules: GeneralConfig,
    now: datetime,
    payload: str | None = None,
) -> list[Reply]:
    """``/start``: register (idempotent), greet in the customer's language, ask consent once.
    ``/start <link code>`` (a deep link) also links the shop's imported customer record."""
    customer, is_new = await ensure_customer(session, person, rules, now)
    link_reply = None
    if payload:
        customer, link_reply = await linking.link_by_code(session, customer, payload, now)
    if not is_new and customer.name != person.display_name:
        customer.name = person.display_name
        customer.username = person.username
        customer.updated_at = now
    replies = [
        Reply("welcome" if is_new else "welcome_back", customer.language, {"name": customer.name})
    ]
    if link_reply:
        replies.append(Reply(link_reply, customer.language))
    if not customer.consent_answered:
        replies.append(_consent_question(customer))
    return replies


async def help_text(
    session: AsyncSession, person: Person, rules: GeneralConfig, now: datetime
) -> Reply:
    customer, _ = await ensure_customer(session, person, rules, now)
    return Reply("help", customer.language)


def language_menu(language: str) -> Reply:
    return Reply(
        "language_prompt",
        language,
        buttons=[[Button("language_name", f"{CB_LANGUAGE}{code}") for code in LANGUAGES]],
    )


async def ask_language(
    session: AsyncSession, person: Person, rules: GeneralConfig, now: datetime
) -> Reply:
    customer, _ = await ensure_customer(session, person, rules, now)
    return language_menu(customer.language)


async def choose_language(
    session: AsyncSession, user_id: int, language: str, now: datetime
) -> Reply | Alert:
    """Switch the customer's language; every later reply follows it."""
    customer = await customer_queries.get_for_update(session, user_id)
    if customer is None or language not in LANGUAGES:
        return Alert("button_expired", language if language in LANGUAGES else "en")
    customer.language = language
    customer.language_chosen = True
    customer.updated_at = now
    return Reply("language_set", language, replace_message=True)


async def set_consent(
    session: AsyncSession, user_id: int, answer: str, now: datetime
) -> Reply | Alert:
    """The consent question's ``yes`` / ``no``."""
    customer = await customer_queries.get_for_update(session, user_id)
    if customer is None:
        return Alert("button_expired", "en")
    consent = answer == "yes"
    customer.consent = consent
    customer.consent_answered = True
    customer.updated_at = now
    return Reply("consent_on" if consent else "consent_off", customer.language)


async def stop(
    session: AsyncSession, person: Person, rules: GeneralConfig, now: datetime
) -> Reply:
    """``/stop``: no more proactive messages; replies to the customer's own tickets still go."""
    customer, _ = await ensure_customer(session, person, rules, now)
    customer.consent = False
    customer.consent_answered = True
    customer.awaiting = None
    customer.updated_at = now
    return Reply("stop_done", customer.language)


def _yes_no(flag: bool) -> TextRef:
    return TextRef("yes" if flag else "no")


def profile_card(customer: Customer) -> Reply:
    """The profile with one button per editable field."""
    not_set = TextRef("not_set")
    birthday = (
        str(Birthday(customer.birth_year, customer.birth_month, customer.birth_day))
        if customer.birth_month and customer.birth_day
        else not_set
    )
    return Reply(
        "profile_card",
        customer.language,
        {
            "name": customer.name or not_set,
            "language": TextRef("language_name"),
            "birthday": birthday,
            "lunar": _yes_no(customer.birthday_lunar),
            "phone": customer.phone or not_set,
            "timezone": customer.timezone,
            "consent": _yes_no(customer.consent),
        },
        buttons=[
            [
                Button("button_birthday", f"{CB_PROFILE}birthday"),
                Button(
                    "button_lunar",
                    f"{CB_PROFILE}lunar",
                    {"state": _yes_no(customer.birthday_lunar)},
                ),
            ],
            [
                Button("button_phone", f"{CB_PROFILE}phone"),
                Button("button_timezone", f"{CB_PROFILE}timezone"),
            ],
            [
                Button(
                    "button_consent", f"{CB_PROFILE}consent", {"state": _yes_no(customer.consent)}
                ),
                Button("button_language", f"{CB_PROFILE}language"),
            ],
        ],
    )


async def show_profile(
    session: AsyncSession, person: Person, rules: GeneralConfig, now: datetime
) -> Reply:
    customer, _ = await ensure_customer(session, person, rules, now)
    return profile_card(customer)


async def profile_action(
    session: AsyncSession, user_id: int, action: str, now: datetime
) -> Reply | list[Reply] | Alert:
    """A button on the profile card: ask for a field, or toggle a flag and show the new card."""
    customer = await customer_queries.get_for_update(session, user_id)
    if customer is None:
        return Alert("button_expired", "en")
    customer.updated_at = now
    match action:
        case "birthday":
            customer.awaiting = AWAITING_BIRTHDAY
            prompt = "birthday_prompt_lunar" if customer.birthday_lunar else "birthday_prompt"
            return [Reply(prompt, customer.language)]
        case "timezone":
            customer.awaiting = AWAITING_TIMEZONE
            return [Reply("timezone_prompt", customer.language)]
        case "phone":
            customer.awaiting = None
            return [Reply("phone_prompt", customer.language, keyboard=Keyboard.REQUEST_CONTACT)]
        case "lunar":
            if not _fits_calendar(customer, not customer.birthday_lunar, now):
                return Alert("lunar_toggle_refused", customer.language)
            customer.birthday_lunar = not customer.birthday_lunar
            return [_replace(profile_card(customer))]
        case "consent":
            customer.consent = not customer.consent
            customer.consent_answered = True
            return [_replace(profile_card(customer))]
        case "language":
            return [language_menu(customer.language)]
    return Alert("button_expired", customer.language)


def _fits_calendar(customer: Customer, lunar: bool, now: datetime) -> bool:
    """Whether the stored birthday (if any) exists in the calendar the flag would switch to:
    a lunar 02-30 is no Gregorian date, a Gregorian 01-31 no lunar one."""
    if not (customer.birth_month and customer.birth_day):
        return True
    birthday = Birthday(customer.birth_year, customer.birth_month, customer.birth_day)
    try:
        check_birthday(birthday, _local_today(customer, now), lunar=lunar)
    except BirthdayError:
        return False
    return True


def _replace(reply: Reply) -> Reply:
    return Reply(
        reply.key,
        reply.language,
        reply.params,
        reply.buttons,
        reply.keyboard,
        replace_message=True,
    )


async def save_contact(
    session: AsyncSession,
    person: Person,
    contact_user_id: int | None,
    phone_number: str,
    rules: GeneralConfig,
    now: datetime,
) -> Reply:
    """Keep the phone only when the shared contact is the customer's own."""
    customer, _ = await ensure_customer(session, person, rules, now)
    if contact_user_id != person.user_id:
        return Reply("phone_not_own", customer.language, keyboard=Keyboard.REQUEST_CONTACT)
    customer.phone = phone_number if phone_number.startswith("+") else f"+{phone_number}"
    customer.updated_at = now
    customer, linked = await linking.link_by_phone(session, customer, now)
    key = "phone_saved_linked" if linked else "phone_saved"
    return Reply(key, customer.language, keyboard=Keyboard.REMOVE)


async def answer_pending_question(
    session: AsyncSession, customer: Customer, text: str, now: datetime
) -> Reply | None:
    """The answer to the profile question the customer was asked (birthday, time zone), saved
    or refused with the reason; None when no profile question waits."""
    if customer.awaiting == AWAITING_BIRTHDAY:
        try:
            birthday = parse_birthday(
                text, _local_today(customer, now), lunar=customer.birthday_lunar
            )
        except BirthdayError as error:
            return Reply(
                "birthday_invalid",
                customer.language,
                {"value": text.strip()[:40], "reason": TextRef(error.reason_key)},
            )
        customer.birth_year, customer.birth_month, customer.birth_day = (
            birthday.year,
            birthday.month,
            birthday.day,
        )
        customer.awaiting = None
        customer.updated_at = now
        return Reply("birthday_saved", customer.language, {"birthday": str(birthday)})
    if customer.awaiting == AWAITING_TIMEZONE:
        zone = text.strip()
        if not is_time_zone(zone):
            return Reply("timezone_invalid", customer.language, {"value": zone[:40]})
        customer.timezone = zone
        customer.awaiting = None
        customer.updated_at = now
        # Follow-up visits fall on the delivery's local day: it moves with the zone.
        await care_queries.schedule_followups(
            session, select(Customer.id).where(Customer.id == customer.id)
        )
        return Reply("timezone_saved", customer.language, {"timezone": zone})
    return None


async def unsupported_input(
    session: AsyncSession, person: Person, rules: GeneralConfig, now: datetime
) -> Reply:
    customer, _ = await ensure_customer(session, person, rules, now)
    return Reply("unsupported_input", customer.language)


async def ask_forget(
    session: AsyncSession, person: Person, rules: GeneralConfig, now: datetime
) -> Reply:
    customer, _ = await ensure_customer(session, person, rules, now)
    buttons = _confirm_buttons(CB_FORGET, "forget_yes_button", "forget_no_button")
    return Reply("forget_confirm", customer.language, buttons=buttons)


async def confirm_forget(
    session: AsyncSession, desk: Desk, user_id: int, data: str, now: datetime
) -> Reply | Alert:
    """Erase personal data after confirmation; a later ``/start`` registers a fresh customer."""
    customer = await customer_queries.get_for_update(session, user_id)
    if customer is None:
        return Alert("button_expired", "en")
    language = customer.language
    if data.removeprefix(CB_FORGET) != "yes":
        return Reply("forget_cancelled", language, replace_message=True)
    await privacy.erase_customer(session, desk, customer, now)
    return Reply("forget_done", language, keyboard=Keyboard.REMOVE)


async def fallback(
    session: AsyncSession, person: Person, rules: GeneralConfig, now: datetime
) -> Reply:
    """Something we have no rule for yet (an unknown command): point to /help."""
    customer, _ = await ensure_customer(session, person, rules, now)
    return Reply("fallback", customer.language)


async def expired_button(
    session: AsyncSession, user_id: int, _value: str, _now: datetime
) -> Alert:
    """A button from a keyboard that no longer means anything: say so in the right language."""
    customer = await customer_queries.get_by_telegram_id(session, user_id)
    return Alert("button_expired", customer.language if customer else "en")
