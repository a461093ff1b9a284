"""The README pictures' HTML renderer alone (tests/pictures/render.py): no bot, no Chromium."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.fakes.discord import png_bytes
from tests.pictures.render import Context, Directory, render_message, render_page

NOW = datetime(2026, 12, 2, 13, 0, tzinfo=UTC)
USER, CHANNEL, ROLE = 111, 222, 333


def render(payload: dict) -> str:
    ctx = Context(
        Directory(users={USER: "Mara"}, channels={CHANNEL: "general"}, roles={ROLE: "Patrons"}),
        NOW,
        images={"out_1.png": png_bytes()},
    )
    fragment = render_message(payload, ctx, author="Banana Studio", bot=True)
    return render_page([fragment], channel="general", width=600)


def test_a_message_renders_markdown_mentions_timestamps_embeds_and_buttons() -> None:
    started = int(NOW.timestamp()) - 120
    html = render(
        {
            "content": (
                f"⏳ **In the queue** · started <t:{started}:R>\n> a cat & a dog\n"
                f"-# <@{USER}> in <#{CHANNEL}> for <@&{ROLE}> · job `ab<c>`"
            ),
            "embeds": [
                {
                    "title": "Imagine",
                    "color": 0xFACC15,
                    "description": "a **bold** prompt",
                    "fields": [
                        {"name": "Seed", "value": "`42`", "inline": True},
                        {"name": "Requested by", "value": f"<@{USER}>", "inline": True},
                    ],
                    "footer": {"text": "job ab12 · 2 credits"},
                    "image": {"url": "attachment://out_1.png"},
                }
            ],
            "components": [
                {
                    "type": 1,
                    "components": [
                        {"type": 2, "style": 4, "label": "Cancel", "custom_id": "x"},
                        {"type": 2, "style": 1, "label": "Re-roll", "emoji": {"name": "🎲"}},
                    ],
                }
            ],
            "attachments": [{"filename": "out_1.png", "content_type": "image/png", "size": 70}],
            "flags": 64,
            "timestamp": NOW.isoformat(),
            "interaction_metadata": {"name": "imagine", "user": {"username": "mara"}},
        }
    )
    assert "<strong>In the queue</strong>" in html
    assert '<span class="ts">2 minutes ago</span>' in html
    assert "<blockquote>" in html and "a cat &amp; a dog" in html
    assert '<div class="subtext">' in html
    assert '<span class="mention">@Mara</span>' in html
    assert '<span class="mention">#general</span>' in html
    assert '<span class="mention">@Patrons</span>' in html
    assert "<code>ab&lt;c&gt;</code>" in html
    assert "border-left-color:#facc15" in html and '<div class="e-title">Imagine</div>' in html
    assert "a <strong>bold</strong> prompt" in html
    assert '<div class="f-name">Seed</div>' in html and "<code>42</code>" in html
    assert "job ab12 · 2 credits" in html
    assert html.count("data:image/png;base64,") == 1  # in the embed, not again below it
    assert '<span class="button danger"><span>Cancel</span></span>' in html
    assert 'class="button primary"><span class="emoji">🎲</span><span>Re-roll</span>' in html
    assert "Only you can see this" in html
    assert 'mara</span> used <span class="cmd">/imagine</span>' in html
    assert "http" not in html.replace('href="#"', "")  # nothing to fetch


def test_text_from_the_bot_is_escaped_everywhere() -> None:
    evil = '<script>alert("x")</script>'
    html = render(
        {
            "content": f"**{evil}** {evil}",
            "embeds": [{"title": evil, "fields": [{"name": evil, "value": evil}]}],
            "components": [{"type": 1, "components": [{"type": 2, "style": 2, "label": evil}]}],
            "attachments": [{"filename": evil, "size": 3}],
        }
    )
    assert "<script>" not in html
    assert html.count("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;") == 7
