"""Files: storing uploads and the tests' media (ids, paths, photo sizes), resolving a file
parameter (upload, ``attach://``, file_id or URL), the ``send<Media>`` methods and ``getFile``.
Downloads are served by ``bot.sandbox.server``."""

from __future__ import annotations

import mimetypes
import re
from typing import Any
from urllib.parse import urlsplit

from bot.sandbox.core import StoredFile
from bot.sandbox.methods.posting import PostingMixin, caption_content
from bot.sandbox.protocol import (
    MAX_DOWNLOAD_SIZE,
    MAX_UPLOAD_SIZE,
    ApiError,
    Handler,
    JSONDict,
    bad_request,
)
from bot.sandbox.records import UploadedFile

_FILE_DIRS = {
    "photo": ("photos", ".jpg"),
    "document": ("documents", ""),
    "voice": ("voice", ".oga"),
    "video": ("videos", ".mp4"),
    "audio": ("music", ".mp3"),
    "sticker": ("stickers", ".webp"),
    "animation": ("animations", ".mp4"),
    "video_note": ("video_notes", ".mp4"),
}
_DEFAULT_MIME = {
    "photo": "image/jpeg",
    "voice": "audio/ogg",
    "video": "video/mp4",
    "audio": "audio/mpeg",
    "sticker": "image/webp",
    "animation": "video/mp4",
    "video_note": "video/mp4",
    "document": "application/octet-stream",
}
_FILE_ID_PREFIXES = {"photo": "AgAC", "sticker": "CAAC", "voice": "AwAC"}
_TYPE_NAMES = {"photo": "Photo", "video_note": "VideoNote"}
_MEDIA_METHODS = {
    "sendPhoto": "photo",
    "sendDocument": "document",
    "sendVoice": "voice",
    "sendVideo": "video",
    "sendAudio": "audio",
    "sendSticker": "sticker",
    "sendAnimation": "animation",
    "sendVideoNote": "video_note",
}
"""Each ``send<Media>`` method and the kind of file it sends."""

TINY_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6300010000050001"
    "0d0a2db40000000049454e44ae426082"
)
"""A 1x1 PNG: the content of photos that the test side "sends" without giving bytes."""


def image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height of a PNG, GIF or JPEG image, without decoding it."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                i += 1
                continue
            marker = data[i + 1]
            if marker in (0xD8, 0x01, 0xFF) or 0xD0 <= marker <= 0xD7:
                i += 1 if marker == 0xFF else 2
                continue
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                height = int.from_bytes(data[i + 5 : i + 7], "big")
                width = int.from_bytes(data[i + 7 : i + 9], "big")
                return width, height
            i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return None


def photo_size(stored: StoredFile) -> JSONDict:
    return {
        "file_id": stored.file_id,
        "file_unique_id": stored.file_unique_id,
        "file_size": len(stored.data),
        "width": stored.width or 640,
        "height": stored.height or 480,
    }


def media_object(stored: StoredFile) -> JSONDict:
    """The Bot API object (Document, Video, Sticker, ...) describing a stored file."""
    media: JSONDict = {
        "file_id": stored.file_id,
        "file_unique_id": stored.file_unique_id,
        "file_size": len(stored.data),
    }
    kind = stored.kind
    if kind in ("video", "animation", "sticker"):
        media["width"] = stored.width or (512 if kind == "sticker" else 1280)
        media["height"] = stored.height or (512 if kind == "sticker" else 720)
    if kind in ("video", "animation", "voice", "audio", "video_note"):
        media["duration"] = stored.duration or 0
    if kind == "video_note":
        media["length"] = stored.width or 240
    if kind == "sticker":
        media.update(type="regular", is_animated=False, is_video=False)
    if kind in ("document", "video", "animation", "audio") and stored.file_name:
        media["file_name"] = stored.file_name
    if kind != "sticker" and stored.mime_type:
        media["mime_type"] = stored.mime_type
    return media


class FilesMixin(PostingMixin):
    """The file store and the methods that send or fetch files."""

    def _file_handlers(self) -> dict[str, Handler]:
        handlers: dict[str, Handler] = {"getFile": self._m_get_file}
        for method, kind in _MEDIA_METHODS.items():
            handlers[method] = self._media_sender(method, kind)
        return handlers

    def _media_sender(self, method: str, kind: str) -> Handler:
        async def send(p: JSONDict) -> JSONDict:
            return self._send_media(p, method, kind)

        return send

    def _store_file(
        self,
        kind: str,
        data: bytes,
        *,
        file_name: str | None = None,
        mime_type: str | None = None,
        width: int | None = None,
        height: int | None = None,
        duration: int | None = None,
    ) -> StoredFile:
        number = next(self._file_seq)
        directory, extension = _FILE_DIRS.get(kind, ("documents", ""))
        if kind == "document" and file_name and "." in file_name:
            extension = "." + file_name.rsplit(".", 1)[1][:10]
        prefix = _FILE_ID_PREFIXES.get(kind, "BQAC")
        stored = StoredFile(
            kind=kind,
            file_id=f"{prefix}{kind[:3]}{number:08d}LocalBotApi",
            file_unique_id=f"AQAD{number:08d}",
            file_path=f"{directory}/file_{number}{extension}",
            data=data,
            file_name=file_name,
            mime_type=mime_type or _DEFAULT_MIME.get(kind),
            width=width,
            height=height,
            duration=duration,
        )
        if kind in ("photo", "sticker") and (width is None or height is None):
            size = image_size(data)
            if size is not None:
                stored.width, stored.height = size
        self._keep_file(stored)
        return stored

    def _keep_file(self, stored: StoredFile) -> None:
        self._files[stored.file_id] = stored
        self._files_by_path[stored.file_path] = stored

    def _photo_sizes(self, stored: StoredFile) -> list[JSONDict]:
        if stored.photo_sizes is not None:
            return stored.photo_sizes
        width, height = stored.width or 640, stored.height or 480
        sizes: list[JSONDict] = []
        largest = max(width, height)
        if largest > 320:
            scale = 320 / largest
            thumb = StoredFile(
                kind="photo",
                file_id=stored.file_id + "-m",
                file_unique_id=stored.file_unique_id + "m",
                file_path=stored.file_path.replace(".jpg", "_m.jpg"),
                data=stored.data,
                mime_type=stored.mime_type,
                width=max(1, round(width * scale)),
                height=max(1, round(height * scale)),
            )
            self._keep_file(thumb)
            sizes.append(photo_size(thumb))
        sizes.append(photo_size(stored))
        for entry in [stored] + [self._files[s["file_id"]] for s in sizes[:-1]]:
            entry.photo_sizes = sizes
        return sizes

    def _resolve_file(self, p: JSONDict, name: str, kind: str, value: Any = None) -> StoredFile:
        """The file a parameter designates: an upload, an attach:// part, a file_id or a URL
        (URLs are registered without being fetched)."""
        value = p.get(name) if value is None else value
        if isinstance(value, str) and value.startswith("attach://"):
            value = p.get(value[len("attach://") :])
            if value is None:
                raise bad_request("wrong file identifier/HTTP URL specified")
        if value is None or value == "":
            raise bad_request(f"there is no {name} in the request")
        meta: JSONDict = {
            key: p[key] for key in ("duration", "width", "height") if isinstance(p.get(key), int)
        }
        if isinstance(value, UploadedFile):
            if len(value.data) > MAX_UPLOAD_SIZE:
                raise ApiError(413, "Request Entity Too Large")
            mime = value.content_type
            if not mime or mime == "application/octet-stream":
                mime = mimetypes.guess_type(value.filename or "")[0] or mime
            return self._store_file(
                kind, value.data, file_name=value.filename, mime_type=mime, **meta
            )
        if not isinstance(value, str):
            raise bad_request("wrong file identifier/HTTP URL specified")
        if re.match(r"https?://", value):
            file_name = urlsplit(value).path.rsplit("/", 1)[-1] or None
            return self._store_file(kind, b"", file_name=file_name, **meta)
        stored = self._files.get(value)
        if stored is None:
            raise bad_request("wrong file identifier/HTTP URL specified")
        if (stored.kind == "photo") != (kind == "photo"):
            shown = _TYPE_NAMES.get(stored.kind, stored.kind.capitalize())
            wanted = _TYPE_NAMES.get(kind, kind.capitalize())
            raise bad_request(f"can't use file of type {shown} as {wanted}")
        return stored

    def _file_content(self, kind: str, stored: StoredFile) -> JSONDict:
        if kind == "photo":
            return {"photo": self._photo_sizes(stored)}
        media = media_object(stored) if stored.kind == kind else None
        if media is None:
            media = media_object(StoredFile(**{**stored.__dict__, "kind": kind}))
        content: JSONDict = {kind: media}
        if kind == "animation":
            document = media_object(StoredFile(**{**stored.__dict__, "kind": "document"}))
            content["document"] = document
        return content

    def _send_media(self, p: JSONDict, method: str, kind: str) -> JSONDict:
        target = self._target(p)
        stored = self._resolve_file(p, kind, kind)
        content = self._file_content(kind, stored)
        if kind == "sticker" and isinstance(p.get("emoji"), str):
            content["sticker"]["emoji"] = p["emoji"]
        if kind == "audio":
            for key in ("title", "performer"):
                if p.get(key):
                    content["audio"][key] = p[key]
        if kind != "sticker":
            caption_content(
                p.get("caption"), p.get("parse_mode"), p.get("caption_entities"), content
            )
            if p.get("has_spoiler"):
                content["has_media_spoiler"] = True
            if p.get("show_caption_above_media"):
                content["show_caption_above_media"] = True
        return self._post(
            target,
            content,
            method,
            p,
            caption=p.get("caption") or None,
            parse_mode=p.get("parse_mode"),
        )

    async def _m_get_file(self, p: JSONDict) -> JSONDict:
        stored = self._files.get(p.get("file_id") or "")
        if stored is None:
            raise bad_request("invalid file_id")
        if len(stored.data) > MAX_DOWNLOAD_SIZE:
            raise bad_request("file is too big")
        return stored.get_file()
