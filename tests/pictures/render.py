"""Render a Discord message payload (what the bot sent) as HTML in Discord's dark look.

Used by ``python -m tests.pictures`` to picture the bot for the README. Input is Discord's own
JSON (``StoredMessage.payload()``): content, embeds, components, attachments. Every piece of
text is escaped; images come as bytes and are embedded as ``data:`` URIs, so the page fetches
nothing. Only the Markdown the bot uses is understood: bold, italics, underline, strikethrough,
spoilers, inline and fenced code, masked links, ``>`` quotes, ``-#`` subtext, headers, ``-``
lists, ``\\`` escapes, mentions and ``<t:...>`` timestamps.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

BUTTON_STYLES = {1: "primary", 2: "secondary", 3: "success", 4: "danger", 5: "link", 6: "premium"}
EPHEMERAL = 1 << 6

_INLINE = re.compile(
    r"(?P<code>(`+)(?P<code_text>.+?)\2)"
    r"|\\(?P<escaped>[^\w\s])"
    r"|<@!?(?P<user>\d+)>|<@&(?P<role>\d+)>|<#(?P<channel>\d+)>"
    r"|<t:(?P<ts>-?\d+)(?::(?P<ts_style>[tTdDfFR]))?>"
    r"|\[(?P<link_text>[^\]\n]+)\]\((?P<link_url>https?://[^)\s]+)\)"
    r"|\*\*(?P<bold>.+?)\*\*|__(?P<underline>.+?)__|~~(?P<strike>.+?)~~"
    r"|(?<!\\)\|\|(?P<spoiler>.+?)(?<!\\)\|\|"
    r"|\*(?P<em>[^*\s](?:[^*]*?[^*\s])?)\*|\b_(?P<em2>[^_\s](?:[^_]*?[^_\s])?)_\b",
    re.DOTALL,
)
CSS = (Path(__file__).parent / "discord.css").read_text(encoding="utf-8")
_UNITS = (
    ("year", 31_536_000),
    ("month", 2_592_000),
    ("day", 86_400),
    ("hour", 3600),
    ("minute", 60),
    ("second", 1),
)
_EMPHASIS = {"bold": "strong", "underline": "u", "strike": "s", "em": "em", "em2": "em"}


@dataclass(frozen=True)
class Directory:
    """Names for mentions: user, channel and role ids to what Discord would show."""

    users: Mapping[int, str] = field(default_factory=dict)
    channels: Mapping[int, str] = field(default_factory=dict)
    roles: Mapping[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Context:
    """Everything a message needs besides its payload: names, images and the clock."""

    directory: Directory
    now: datetime
    images: Mapping[str, bytes] = field(default_factory=dict)  # attachment filename -> bytes


# -- text -------------------------------------------------------------------------------------


def format_timestamp(seconds: int, style: str | None, now: datetime) -> str:
    """``<t:seconds:style>`` as Discord (en-US, shown in UTC) writes it."""
    when = datetime.fromtimestamp(seconds, UTC)
    clock = when.strftime("%I:%M %p").lstrip("0")
    day = f"{when:%B} {when.day}, {when.year}"
    if style == "R":
        return relative(when, now)
    return {
        "t": clock,
        "T": when.strftime("%I:%M:%S %p").lstrip("0"),
        "d": when.strftime("%m/%d/%Y"),
        "D": day,
        "F": f"{when:%A}, {day} {clock}",
    }.get(style or "f", f"{day} {clock}")


def relative(when: datetime, now: datetime) -> str:
    delta = (when - now).total_seconds()
    size = abs(delta)
    unit, length = next((u, n) for u, n in _UNITS if size >= n or n == 1)
    count = max(1, round(size / length))
    amount = f"{count} {unit}{'' if count == 1 else 's'}"
    return f"in {amount}" if delta > 0 else f"{amount} ago"


def inline(text: str, ctx: Context) -> str:
    """Discord's inline Markdown as escaped HTML."""
    out: list[str] = []
    last = 0
    for m in _INLINE.finditer(text):
        out.append(escape(text[last : m.start()]))
        out.append(_token(m, ctx))
        last = m.end()
    out.append(escape(text[last:]))
    return "".join(out)


def _token(m: re.Match[str], ctx: Context) -> str:
    names = ctx.directory
    if m["code"]:
        return f"<code>{escape(m['code_text'].strip())}</code>"
    if m["escaped"]:
        return escape(m["escaped"])
    if m["user"]:
        return _pill("@" + names.users.get(int(m["user"]), "unknown-user"))
    if m["role"]:
        return _pill("@" + names.roles.get(int(m["role"]), "deleted-role"))
    if m["channel"]:
        return _pill("#" + names.channels.get(int(m["channel"]), "unknown"))
    if m["ts"]:
        shown = format_timestamp(int(m["ts"]), m["ts_style"], ctx.now)
        return f'<span class="ts">{escape(shown)}</span>'
    if m["link_text"]:
        return f'<a href="{escape(m["link_url"])}">{inline(m["link_text"], ctx)}</a>'
    if m["spoiler"]:
        return f'<span class="spoiler">{inline(m["spoiler"], ctx)}</span>'
    kind = next(k for k in _EMPHASIS if m[k])
    tag = _EMPHASIS[kind]
    return f"<{tag}>{inline(m[kind], ctx)}</{tag}>"


def _pill(text: str) -> str:
    return f'<span class="mention">{escape(text)}</span>'


def markdown(text: str, ctx: Context) -> str:
    """Discord's block Markdown (lines, quotes, subtext, headers, lists, code blocks)."""
    blocks: list[str] = []
    quote: list[str] = []
    lines = iter(text.split("\n"))
    for line in lines:
        if line.startswith("> ") or line == ">":
            quote.append(line[2:])
            continue
        if quote:
            blocks.append(f"<blockquote>{markdown(chr(10).join(quote), ctx)}</blockquote>")
            quote = []
        if line.startswith(">>> "):
            rest = "\n".join([line[4:], *lines])
            blocks.append(f"<blockquote>{markdown(rest, ctx)}</blockquote>")
        elif line.startswith("```"):
            code = []
            for more in lines:
                if more.startswith("```"):
                    break
                code.append(more)
            blocks.append(f"<pre>{escape(chr(10).join(code))}</pre>")
        elif line.startswith("-# "):
            blocks.append(f'<div class="subtext">{inline(line[3:], ctx)}</div>')
        elif m := re.match(r"(#{1,3}) (.*)", line):
            level = len(m[1])
            blocks.append(f"<h{level}>{inline(m[2], ctx)}</h{level}>")
        elif m := re.match(r"(\s*)[-*] (.*)", line):
            depth = 1 + len(m[1]) // 2
            blocks.append(f'<div class="li" style="--depth:{depth}">{inline(m[2], ctx)}</div>')
        else:
            blocks.append(f'<div class="line">{inline(line, ctx) or "&nbsp;"}</div>')
    if quote:
        blocks.append(f"<blockquote>{markdown(chr(10).join(quote), ctx)}</blockquote>")
    return "".join(blocks)


# -- parts of a message -----------------------------------------------------------------------


def image_uri(filename: str, ctx: Context, content_type: str | None = None) -> str | None:
    data = ctx.images.get(filename)
    if data is None:
        return None
    kind = content_type or "image/" + filename.rsplit(".", 1)[-1].lower().replace("jpg", "jpeg")
    return f"data:{escape(kind)};base64,{base64.b64encode(data).decode('ascii')}"


def _image(url: str, ctx: Context, css: str) -> str:
    """An embed image: ``attachment://name`` from the bytes, anything else a placeholder."""
    name = url.removeprefix("attachment://")
    uri = image_uri(name, ctx) if name != url else None
    if uri is None:
        return f'<div class="{css} missing">{escape(url.rsplit("/", 1)[-1][:40])}</div>'
    return f'<img class="{css}" src="{uri}" alt="">'


def footer_time(iso: str, now: datetime) -> str:
    when = datetime.fromisoformat(iso).astimezone(UTC)
    clock = when.strftime("%I:%M %p").lstrip("0")
    return f"Today at {clock}" if when.date() == now.date() else f"{when:%m/%d/%Y} {clock}"


def render_embed(embed: Mapping[str, Any], ctx: Context) -> str:
    color = embed.get("color")
    bar = f"#{color:06x}" if isinstance(color, int) else "#1e1f22"
    parts: list[str] = []
    if author := embed.get("author"):
        parts.append(f'<div class="e-author">{escape(str(author.get("name", "")))}</div>')
    if title := embed.get("title"):
        title_html = inline(str(title), ctx)
        if url := embed.get("url"):
            title_html = f'<a href="{escape(str(url))}">{title_html}</a>'
        parts.append(f'<div class="e-title">{title_html}</div>')
    if description := embed.get("description"):
        parts.append(f'<div class="e-desc">{markdown(str(description), ctx)}</div>')
    fields = embed.get("fields") or []
    if fields:
        parts.append(f'<div class="e-fields">{_fields(fields, ctx)}</div>')
    if image := embed.get("image"):
        parts.append(_image(str(image.get("url", "")), ctx, "e-image"))
    footer = embed.get("footer") or {}
    bits = [escape(str(footer["text"]))] if footer.get("text") else []
    if stamp := embed.get("timestamp"):
        bits.append(escape(footer_time(str(stamp), ctx.now)))
    if bits:
        parts.append(f'<div class="e-footer">{" • ".join(bits)}</div>')
    thumb = embed.get("thumbnail")
    side = _image(str(thumb.get("url", "")), ctx, "e-thumb") if thumb else ""
    return (
        f'<div class="embed" style="border-left-color:{bar}">'
        f'<div class="e-main">{"".join(parts)}</div>{side}</div>'
    )


def _fields(fields: Sequence[Mapping[str, Any]], ctx: Context) -> str:
    """Up to three inline fields share a row; a field that is not inline takes the whole row."""
    rows: list[list[Mapping[str, Any]]] = []
    for item in fields:
        if item.get("inline") and rows and len(rows[-1]) < 3 and rows[-1][-1].get("inline"):
            rows[-1].append(item)
        else:
            rows.append([item])
    html = []
    for row in rows:
        cells = "".join(
            f'<div class="field"><div class="f-name">{inline(str(f.get("name", "")), ctx)}</div>'
            f'<div class="f-value">{markdown(str(f.get("value", "")), ctx)}</div></div>'
            for f in row
        )
        html.append(f'<div class="f-row" style="--cols:{len(row)}">{cells}</div>')
    return "".join(html)


def render_components(rows: Sequence[Mapping[str, Any]]) -> str:
    html = []
    for row in rows:
        items = row.get("components", []) if row.get("type") == 1 else [row]
        html.append(f'<div class="row">{"".join(_component(c) for c in items)}</div>')
    return "".join(html)


def _component(comp: Mapping[str, Any]) -> str:
    if comp.get("type") == 2:
        style = BUTTON_STYLES.get(int(comp.get("style", 2)), "secondary")
        emoji = comp.get("emoji") or {}
        icon = emoji.get("name", "") if not emoji.get("id") else f":{emoji.get('name', '')}:"
        bits = [f'<span class="emoji">{escape(str(icon))}</span>'] if icon else []
        if comp.get("label"):
            bits.append(f"<span>{escape(str(comp['label']))}</span>")
        if style == "link":
            bits.append('<span class="out">↗</span>')
        disabled = " disabled" if comp.get("disabled") else ""
        return f'<span class="button {style}{disabled}">{"".join(bits)}</span>'
    if comp.get("type") in (3, 5, 6, 7, 8):
        placeholder = str(comp.get("placeholder") or "Make a selection")
        return f'<span class="select">{escape(placeholder)}<span class="chev">⌄</span></span>'
    return ""


def render_attachments(attachments: Sequence[Mapping[str, Any]], ctx: Context) -> str:
    pictures, files = [], []
    for item in attachments:
        name = str(item.get("filename", "file"))
        uri = image_uri(name, ctx, item.get("content_type"))
        if uri is not None and str(item.get("content_type", "")).startswith("image/"):
            pictures.append(f'<img src="{uri}" alt="{escape(name)}">')
        else:
            size = int(item.get("size", 0))
            files.append(
                f'<div class="file"><span class="f-icon">📄</span><div><div class="f-file">'
                f'{escape(name)}</div><div class="f-size">{size:,} bytes</div></div></div>'
            )
    gallery = f'<div class="gallery n{len(pictures)}">{"".join(pictures)}</div>' if pictures else ""
    return gallery + "".join(files)


# -- a whole message --------------------------------------------------------------------------


def avatar(name: str, color: str) -> str:
    words = [w for w in re.split(r"\W+", name) if w][:2]
    letters = escape("".join(w[0] for w in words).upper() or "?")
    return f'<div class="avatar" style="background:{color}">{letters}</div>'


def render_message(
    payload: Mapping[str, Any],
    ctx: Context,
    *,
    author: str,
    bot: bool = False,
    avatar_color: str = "#5865f2",
) -> str:
    """One message (``StoredMessage.payload()`` shape) as an HTML fragment."""
    meta = payload.get("interaction_metadata") or {}
    head = ""
    if meta.get("name"):
        user = meta.get("user") or {}
        who = user.get("global_name") or user.get("username") or "someone"
        head = (
            f'<div class="reply"><span class="curve"></span>{avatar(str(who), "#80848e")}'
            f'<span class="who">{escape(str(who))}</span> used '
            f'<span class="cmd">/{escape(str(meta["name"]))}</span></div>'
        )
    stamp = payload.get("timestamp")
    when = escape(footer_time(str(stamp), ctx.now)) if stamp else ""
    tag = '<span class="app">APP</span>' if bot else ""
    body = [markdown(str(payload["content"]), ctx)] if payload.get("content") else []
    referenced = {
        str(e[k]["url"]).removeprefix("attachment://")
        for e in payload.get("embeds") or []
        for k in ("image", "thumbnail")
        if isinstance(e.get(k), dict) and str(e[k].get("url", "")).startswith("attachment://")
    }
    body += [render_embed(e, ctx) for e in payload.get("embeds") or []]
    shown = [a for a in payload.get("attachments") or [] if a.get("filename") not in referenced]
    body.append(render_attachments(shown, ctx))
    body.append(render_components(payload.get("components") or []))
    if int(payload.get("flags") or 0) & EPHEMERAL:
        body.append(
            '<div class="ephemeral"><span class="eye">👁</span> Only you can see this • '
            '<a href="#">Dismiss message</a></div>'
        )
    return (
        f'<div class="message">{head}<div class="msg-main">{avatar(author, avatar_color)}'
        f'<div class="msg-body"><div class="msg-head"><span class="name">{escape(author)}</span>'
        f'{tag}<span class="time">{when}</span></div>{"".join(body)}</div></div></div>'
    )


def render_page(fragments: Sequence[str], *, channel: str, width: int) -> str:
    """A full page (no external resources): a channel's header and the rendered messages."""
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>#{escape(channel)}'
        f'</title><style>{CSS}</style></head><body style="width:{width}px">'
        f'<header><span class="hash">#</span>{escape(channel)}</header>'
        f'<main class="channel">{"".join(fragments)}</main></body></html>'
    )
