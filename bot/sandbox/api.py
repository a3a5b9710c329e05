"""``LocalBotApi``: a local Telegram Bot API server for end-to-end tests, benchmarks and the
demo sandbox.

python-telegram-bot talks to it over real HTTP exactly as it would to ``api.telegram.org``::

    api = LocalBotApi(token)
    root = await api.start()  # "http://127.0.0.1:PORT"
    bot = Bot(token, base_url=f"{root}/bot", base_file_url=f"{root}/file/bot")

Requests arrive as ``POST {root}/bot<token>/<method>`` (JSON, url-encoded or multipart bodies,
query strings too). Responses follow the Bot API: ``{"ok": true, "result": ...}`` or a
Telegram-shaped error whose HTTP status equals ``error_code``.

The same object is the tests' side of the conversation: it plays customers and staff
(``send_text``, ``press_button``, ...), records what the bot did (``calls``, ``sent``,
``message``, ``answered_callbacks``, ``topics``), and injects faults (``block``, ``fail``,
``rate_limit``, ``delete_topic``, ``set_latency``). Everything runs on one event loop; the
test-side methods must be called from that loop.

The class is composed of mixins, one per part of ``bot.sandbox`` (server, faults, cast,
actors, methods, observe) over the shared state of ``bot.sandbox.core``.

Deliberate simplifications: no inline mode, payments, games, sticker sets, business or
channel features; ``allowed_updates`` is stored but not used for filtering; URLs given as files
are never fetched (the file is registered without content); ``text`` of stored messages is
Telegram's (markup removed, ``entities`` added) while ``SentMessage.text`` is what the bot sent.
"""

from __future__ import annotations

from bot.sandbox.actors import ActorsMixin
from bot.sandbox.cast import CastMixin
from bot.sandbox.methods.callbacks import CallbacksMixin
from bot.sandbox.methods.chats import ChatsMixin
from bot.sandbox.methods.edits import EditsMixin
from bot.sandbox.methods.messages import MessagesMixin
from bot.sandbox.methods.profile import ProfileMixin
from bot.sandbox.observe import ObserveMixin
from bot.sandbox.protocol import Handler
from bot.sandbox.server import ServerMixin


class LocalBotApi(
    ServerMixin,
    CastMixin,
    ActorsMixin,
    MessagesMixin,
    EditsMixin,
    ChatsMixin,
    ProfileMixin,
    CallbacksMixin,
    ObserveMixin,
):
    """The local Bot API server and the tests' handle on it. See the module docstring."""

    def __init__(
        self,
        token: str = "123456:TEST-TOKEN",
        *,
        bot_id: int = 123456,
        bot_username: str = "carebot_test_bot",
        bot_first_name: str = "Carebot",
    ) -> None:
        super().__init__(
            token, bot_id=bot_id, bot_username=bot_username, bot_first_name=bot_first_name
        )
        self._init_server(self._build_handlers())

    def _build_handlers(self) -> dict[str, Handler]:
        """Every implemented Bot API method, by name (others answer 501 or 404)."""
        return {
            **self._update_handlers(),
            **self._profile_handlers(),
            **self._message_handlers(),
            **self._file_handlers(),
            **self._edit_handlers(),
            **self._callback_handlers(),
            **self._chat_handlers(),
            **self._forum_handlers(),
        }
