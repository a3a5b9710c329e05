"""The bot's own profile and settings: ``getMe``, ``logOut``/``close``, the command menus
(``setMyCommands`` and co., by scope and language), name and descriptions, the chat menu
button and default administrator rights (kept in ``bot_settings``)."""

from __future__ import annotations

import re
from typing import Any

from bot.sandbox.core import SandboxCore
from bot.sandbox.protocol import Handler, JSONDict, bad_request

_SETTERS = (
    "setMyName",
    "setMyDescription",
    "setMyShortDescription",
    "setChatMenuButton",
    "setMyDefaultAdministratorRights",
)
"""Methods whose parameters are only kept (in ``bot_settings``, by method name)."""
_GETTERS = {
    "getMyName": ("setMyName", "name"),
    "getMyDescription": ("setMyDescription", "description"),
    "getMyShortDescription": ("setMyShortDescription", "short_description"),
}
"""Methods answering ``{key: ...}`` from what a setter kept."""


def _scope_key(scope: Any) -> str:
    if not isinstance(scope, dict) or scope.get("type", "default") == "default":
        return "default"
    parts = [str(scope.get("type"))]
    parts += [str(scope[key]) for key in ("chat_id", "user_id") if key in scope]
    return ":".join(parts)


def _language(p: JSONDict) -> str:
    language = p.get("language_code") or ""
    if language and not re.fullmatch(r"[a-z]{2}", language):
        raise bad_request("invalid language code specified")
    return str(language)


def _commands_key(p: JSONDict) -> tuple[str, str]:
    return _scope_key(p.get("scope")), _language(p)


class ProfileMixin(SandboxCore):
    def _profile_handlers(self) -> dict[str, Handler]:
        handlers: dict[str, Handler] = {
            "getMe": self._m_get_me,
            "logOut": self._m_true,
            "close": self._m_true,
            "setMyCommands": self._m_set_my_commands,
            "getMyCommands": self._m_get_my_commands,
            "deleteMyCommands": self._m_delete_my_commands,
            "getChatMenuButton": self._m_get_chat_menu_button,
        }
        for name in _SETTERS:
            handlers[name] = self._settings_setter(name)
        for name, (setter, key) in _GETTERS.items():
            handlers[name] = self._settings_getter(setter, key)
        return handlers

    def _settings_setter(self, name: str) -> Handler:
        async def setter(p: JSONDict) -> bool:
            self.bot_settings[name] = p
            return True

        return setter

    def _settings_getter(self, name: str, key: str) -> Handler:
        async def getter(p: JSONDict) -> JSONDict:
            return {key: self.bot_settings.get(name, {}).get(key, "")}

        return getter

    async def _m_true(self, p: JSONDict) -> bool:
        return True

    async def _m_get_me(self, p: JSONDict) -> JSONDict:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _m_set_my_commands(self, p: JSONDict) -> bool:
        commands = p.get("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise bad_request("commands must be an Array of at most 100 BotCommand")
        for command in commands:
            if not isinstance(command, dict) or not re.fullmatch(
                r"[a-z0-9_]{1,32}", str(command.get("command", ""))
            ):
                raise bad_request("BOT_COMMAND_INVALID")
            description = command.get("description")
            if not isinstance(description, str) or not 1 <= len(description) <= 256:
                raise bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
        key = _commands_key(p)
        self.commands[key] = [
            {"command": c["command"], "description": c["description"]} for c in commands
        ]
        return True

    async def _m_get_my_commands(self, p: JSONDict) -> list[JSONDict]:
        return self.commands.get(_commands_key(p), [])

    async def _m_delete_my_commands(self, p: JSONDict) -> bool:
        self.commands.pop(_commands_key(p), None)
        return True

    async def _m_get_chat_menu_button(self, p: JSONDict) -> JSONDict:
        button = self.bot_settings.get("setChatMenuButton", {}).get("menu_button")
        return button if isinstance(button, dict) else {"type": "default"}
