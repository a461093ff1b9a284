"""The fake Discord driven by the real discord.py client (a tiny test bot, not the product bot).

Checks both sides: the bot sees realistic interactions (commands, DynamicItem buttons after a
restart, modals, context menus, attachments), and the fake records what Discord would have
received (files, components, flags, allowed mentions) and injects 429s and expired tokens.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import io
import logging
import re
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import discord
import discord.gateway
import discord.http
import pytest
from discord import app_commands
from discord.ext import commands

from tests.fakes.discord import (
    FakeDiscord,
    NoBotConnected,
    Recorded,
    SentInteraction,
    StoredMessage,
    png_bytes,
)
from tests.fakes.discord_limits import message_problem, modal_problem

PNG_A = png_bytes(3, 2, (255, 0, 0))
PNG_B = png_bytes(2, 5, (0, 0, 255))
NO_PINGS = discord.AllowedMentions.none()
STYLES = ("anime", "analog", "oil")


# -- the tiny bot --------------------------------------------------------------------------


class RerollButton(
    discord.ui.DynamicItem[discord.ui.Button], template=r"reroll:(?P<job>[0-9a-z]+)"
):
    """A restart-proof button: the job id lives in the custom_id."""

    def __init__(self, job: str) -> None:
        super().__init__(
            discord.ui.Button(
                label="Re-roll", style=discord.ButtonStyle.primary, custom_id=f"reroll:{job}"
            )
        )
        self.job = job

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str]
    ) -> RerollButton:
        return cls(match["job"])

    async def callback(self, interaction: discord.Interaction[TinyBot]) -> None:
        interaction.client.clicks.append((self.job, interaction.user.id))
        await interaction.response.edit_message(
            content=f"re-rolled {self.job} for {interaction.user.mention}",
            allowed_mentions=NO_PINGS,
        )


class FeedbackModal(discord.ui.Modal, title="Feedback"):
    text: discord.ui.Label[FeedbackModal] = discord.ui.Label(
        text="Your feedback",
        component=discord.ui.TextInput(custom_id="feedback:text", max_length=50),
    )

    async def on_submit(self, interaction: discord.Interaction) -> None:
        assert isinstance(self.text.component, discord.ui.TextInput)
        await interaction.response.send_message(
            f"thanks: {self.text.component.value}", ephemeral=True
        )


class Studio(commands.Cog):
    admin = app_commands.Group(name="admin", description="Admin tools")
    quota = app_commands.Group(name="quota", description="Quota settings", parent=admin)

    def __init__(self, bot: TinyBot) -> None:
        self.bot = bot

    @app_commands.command(description="Render two images")
    async def render(self, interaction: discord.Interaction, prompt: str) -> None:
        await interaction.response.defer()
        job = format(interaction.id, "x")[-8:]
        view = discord.ui.View(timeout=None)
        view.add_item(RerollButton(job))
        files = [
            discord.File(io.BytesIO(PNG_A), "a.png"),
            discord.File(io.BytesIO(PNG_B), "b.png"),
        ]
        await interaction.followup.send(
            prompt, files=files, view=view, allowed_mentions=NO_PINGS, wait=True
        )

    @app_commands.command(description="Ephemeral answer")
    async def secret(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message("s3cret", ephemeral=True)

    @app_commands.command(description="Open a modal")
    async def feedback(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(FeedbackModal(custom_id="feedback-modal"))

    @app_commands.command(description="Describe an uploaded image")
    async def inspect(self, interaction: discord.Interaction, image: discord.Attachment) -> None:
        data = await image.read()
        digest = hashlib.sha256(data).hexdigest()[:12]
        await interaction.response.send_message(
            f"{image.filename} {image.content_type} {image.size} {len(data)} {digest}"
        )

    @app_commands.command(description="Post in the channel")
    async def announce(self, interaction: discord.Interaction, text: str) -> None:
        await interaction.response.defer(ephemeral=True)
        assert isinstance(interaction.channel, discord.TextChannel)
        await interaction.channel.send(
            text, file=discord.File(io.BytesIO(PNG_A), "c.png"), allowed_mentions=NO_PINGS
        )
        await interaction.followup.send("posted", ephemeral=True)

    @app_commands.command(description="Deliver late, falling back to the channel")
    async def slow(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        await self.bot.gate.wait()
        try:
            await interaction.followup.send("done")
        except discord.NotFound as exc:
            self.bot.errors.append(exc)
            assert isinstance(interaction.channel, discord.TextChannel)
            await interaction.channel.send(
                f"{interaction.user.mention} your result is ready",
                allowed_mentions=discord.AllowedMentions(
                    everyone=False, roles=False, users=[interaction.user]
                ),
            )

    @app_commands.command(description="Answer only when the gate opens")
    async def late(self, interaction: discord.Interaction) -> None:
        await self.bot.gate.wait()
        try:
            await interaction.response.send_message("too late?")
        except discord.NotFound as exc:
            self.bot.errors.append(exc)

    @quota.command(name="default", description="Set the default daily quota")
    async def quota_default(
        self, interaction: discord.Interaction, credits: app_commands.Range[int, 0, 1000]
    ) -> None:
        await interaction.response.send_message(f"default quota {credits}", ephemeral=True)

    @app_commands.command(description="DM me")
    async def dm_me(self, interaction: discord.Interaction) -> None:
        try:
            await interaction.user.send("hello in private")
        except discord.Forbidden as exc:
            await interaction.response.send_message(f"dms closed ({exc.code})", ephemeral=True)
        else:
            await interaction.response.send_message("sent", ephemeral=True)

    @app_commands.command(description="Answer, then take it back")
    async def oops(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message("oops")
        await interaction.delete_original_response()

    @app_commands.command(description="Pick a style")
    async def style(self, interaction: discord.Interaction, name: str) -> None:
        view = discord.ui.View(timeout=None)
        select: discord.ui.Select[discord.ui.View] = discord.ui.Select(
            custom_id="style:pick", options=[discord.SelectOption(label=s) for s in STYLES]
        )

        async def chosen(inner: discord.Interaction) -> None:
            await inner.response.edit_message(content=f"picked {select.values}", view=None)

        select.callback = chosen  # type: ignore[method-assign]
        view.add_item(select)
        await interaction.response.send_message(f"style {name}", view=view)

    @style.autocomplete("name")
    async def style_names(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return [app_commands.Choice(name=s, value=s) for s in STYLES if s.startswith(current)]


async def where(interaction: discord.Interaction) -> None:
    kind = "guild" if interaction.guild_id else "dm"
    perms = interaction.permissions
    await interaction.response.send_message(
        f"{kind} {interaction.channel_id} manage={perms.manage_guild} "
        f"limit={interaction.filesize_limit} nsfw={getattr(interaction.channel, 'nsfw', None)}"
    )


async def describe_message(interaction: discord.Interaction, message: discord.Message) -> None:
    await interaction.response.send_message(
        f"{message.id} by {message.author.id}: {message.content!r} "
        f"{[a.filename for a in message.attachments]}",
        ephemeral=True,
    )


async def wave(interaction: discord.Interaction, member: discord.Member) -> None:
    await interaction.response.send_message(f"wave {member.id} {member.display_name}")


class TinyBot(commands.Bot):
    def __init__(self, guild_id: int) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=discord.Intents.default(),
            guild_ready_timeout=0.05,
            help_command=None,
        )
        self.guild_id = guild_id
        self.gate = asyncio.Event()
        self.errors: list[Exception] = []
        self.clicks: list[tuple[str, int]] = []

    async def setup_hook(self) -> None:
        guild = discord.Object(self.guild_id)
        self.add_dynamic_items(RerollButton)
        await self.add_cog(Studio(self), guilds=[guild])
        self.tree.add_command(
            app_commands.ContextMenu(name="Describe", callback=describe_message), guild=guild
        )
        self.tree.add_command(app_commands.ContextMenu(name="Wave", callback=wave), guild=guild)
        global_where = app_commands.Command(name="where", description="Where am I", callback=where)
        global_where.allowed_contexts = app_commands.AppCommandContext(guild=True, dm_channel=True)
        self.tree.add_command(global_where)
        await self.tree.sync(guild=guild)
        await self.tree.sync()


# -- fixtures --------------------------------------------------------------------------------


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(autouse=True)
def clean_shutdown() -> Iterator[None]:
    """Fail a test that leaves unclosed sessions or pending tasks behind."""
    handler = _Collect()
    logging.getLogger("asyncio").addHandler(handler)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        yield
        gc.collect()
    logging.getLogger("asyncio").removeHandler(handler)
    leaks = [m for m in handler.messages if "Unclosed" in m or "Task was destroyed" in m]
    leaks += [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert not leaks, leaks


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as server:
        yield server


@pytest.fixture
async def bot(fake: FakeDiscord) -> AsyncIterator[TinyBot]:
    tiny = TinyBot(fake.guild.id)
    async with fake.run_bot(tiny):
        yield tiny


async def render(
    fake: FakeDiscord, prompt: str = "a red square"
) -> tuple[SentInteraction, StoredMessage]:
    sent = await fake.slash_command("render", {"prompt": prompt})
    msg = await sent.wait_for_original()
    return sent, msg


# -- tests: the full interaction loop --------------------------------------------------------


async def test_commands_sync_to_the_fake_with_their_definitions(
    fake: FakeDiscord, bot: TinyBot
) -> None:
    commands_ = {c["name"]: c for c in fake.commands(fake.guild.id)}
    assert {"render", "secret", "feedback", "inspect", "admin", "Describe"} <= set(commands_)
    prompt = commands_["render"]["options"][0]
    assert (prompt["name"], prompt["type"], prompt["required"]) == ("prompt", 3, True)
    assert commands_["Describe"]["type"] == 3
    put = fake.requests_to(f"PUT /applications/{fake.application_id}/guilds/*/commands")
    assert len(put) == 1 and put[0].status == 200


async def test_deferred_followup_delivers_png_files_and_a_dynamic_button(
    fake: FakeDiscord, bot: TinyBot
) -> None:
    sent, msg = await render(fake, "a <@123> square @everyone")

    assert sent.callback_type == 5  # deferred, then the followup replaced "thinking..."
    assert sent.followups == [] and not msg.loading and not msg.ephemeral
    post = await sent.wait_for_request(f"POST /webhooks/{fake.application_id}/*")
    assert post.query["wait"] == "1"
    assert [f.filename for f in post.files] == ["a.png", "b.png"]
    assert post.files[0].data == PNG_A and post.files[1].data == PNG_B
    assert all(f.is_png for f in post.files)
    assert post.json["allowed_mentions"] == {"parse": []}
    assert msg.pinged() == {"users": set(), "roles": set(), "everyone": False}
    assert msg.custom_ids() == [f"reroll:{format(sent.id, 'x')[-8:]}"]
    assert [(a.filename, a.content_type, a.width, a.height) for a in msg.attachments] == [
        ("a.png", "image/png", 3, 2),
        ("b.png", "image/png", 2, 5),
    ]
    async with aiohttp.ClientSession() as http, http.get(msg.attachments[1].url) as resp:
        assert resp.status == 200 and await resp.read() == PNG_B  # served back by the fake


async def test_button_click_is_routed_to_the_dynamic_item_and_edits_the_message(
    fake: FakeDiscord, bot: TinyBot
) -> None:
    _, msg = await render(fake)
    admin = fake.guild.admin
    assert admin is not None

    click = await fake.click_button(msg, msg.custom_ids()[0], user=admin)
    await click.wait_for_callback()

    assert click.callback_type == 7
    assert click.original is msg
    assert msg.content == f"re-rolled {msg.custom_ids()[0][7:]} for <@{admin.id}>"
    assert len(msg.attachments) == 2  # an edit without "attachments" keeps the files
    assert bot.clicks == [(msg.custom_ids()[0][7:], admin.id)]


async def test_bot_restart_still_handles_clicks_on_old_messages(fake: FakeDiscord) -> None:
    first = TinyBot(fake.guild.id)
    async with fake.run_bot(first):
        _, msg = await render(fake)
    assert not fake.connected

    second = TinyBot(fake.guild.id)
    async with fake.run_bot(second):
        click = await fake.click_button(msg, msg.custom_ids()[0])
        await click.wait_for_callback()
    assert second.clicks and not first.clicks
    assert msg.content.startswith("re-rolled")


async def test_modal_opens_and_submission_reaches_on_submit(
    fake: FakeDiscord, bot: TinyBot
) -> None:
    opened = await fake.slash_command("feedback")
    await opened.wait_for_callback()
    assert opened.callback_type == 9
    assert opened.modal is not None and opened.modal["custom_id"] == "feedback-modal"
    assert opened.modal["components"][0]["type"] == 18  # discord.py 2.7 Label

    with pytest.raises(ValueError, match="no input"):
        await fake.submit_modal("feedback-modal", {"nope": "x"})
    with pytest.raises(ValueError, match="at most 50"):
        await fake.submit_modal("feedback-modal", {"feedback:text": "x" * 51})

    submitted = await fake.submit_modal("feedback-modal", {"feedback:text": "great bot"})
    reply = await submitted.wait_for_original()
    assert submitted.payload["data"]["components"][0]["component"]["value"] == "great bot"
    assert reply.content == "thanks: great bot" and reply.ephemeral


async def test_ephemeral_response_has_flag_64(fake: FakeDiscord, bot: TinyBot) -> None:
    sent = await fake.slash_command("secret")
    msg = await sent.wait_for_original()
    assert sent.callback is not None and sent.callback.json["data"]["flags"] == 64
    assert sent.ephemeral and msg.ephemeral and msg.content == "s3cret"


async def test_message_context_menu_gets_the_target_message(
    fake: FakeDiscord, bot: TinyBot
) -> None:
    upload = fake.make_attachment(PNG_A, "mine.png")
    target = await fake.post_user_message(
        fake.guild.text_channel.id, fake.guild.member, "look", attachments=[upload]
    )
    sent = await fake.message_context_menu("Describe", target)
    reply = await sent.wait_for_original()
    assert sent.payload["data"]["target_id"] == str(target.id)
    assert reply.content == f"{target.id} by {fake.guild.member.id}: 'look' ['mine.png']"


async def test_subcommand_group_options_are_nested(fake: FakeDiscord, bot: TinyBot) -> None:
    sent = await fake.slash_command("admin quota default", {"credits": 30}, user=fake.guild.admin)
    reply = await sent.wait_for_original()
    group = sent.payload["data"]["options"][0]
    assert (group["name"], group["type"]) == ("quota", 2)
    assert group["options"][0]["options"] == [{"name": "credits", "type": 4, "value": 30}]
    assert reply.content == "default quota 30"
    with pytest.raises(ValueError, match="unknown option"):
        await fake.slash_command("admin quota default", {"credit": 30})


async def test_attachment_option_is_resolved_and_downloadable(
    fake: FakeDiscord, bot: TinyBot
) -> None:
    upload = fake.make_attachment(PNG_B, "in.png")
    sent = await fake.slash_command("inspect", {"image": upload})
    reply = await sent.wait_for_original()
    option = sent.payload["data"]["options"][0]
    assert option == {"name": "image", "type": 11, "value": str(upload.id)}
    assert sent.payload["data"]["resolved"]["attachments"][str(upload.id)]["size"] == len(PNG_B)
    digest = hashlib.sha256(PNG_B).hexdigest()[:12]
    assert reply.content == f"in.png image/png {len(PNG_B)} {len(PNG_B)} {digest}"
    assert fake.requests_to(f"GET /attachments/*/{upload.id}/in.png")


async def test_interaction_envelope_guild_and_dm(fake: FakeDiscord, bot: TinyBot) -> None:
    nsfw = fake.guild.nsfw_channel
    in_guild = await fake.slash_command(
        "where", user=fake.guild.admin, channel_id=nsfw, attachment_size_limit=26214400
    )
    reply = await in_guild.wait_for_original()
    assert reply.content == f"guild {nsfw.id} manage=True limit=26214400 nsfw=True"
    payload = in_guild.payload
    for key in ("id", "type", "token", "version", "application_id", "channel", "member"):
        assert key in payload
    assert payload["context"] == 0 and payload["entitlements"] == []
    assert payload["authorizing_integration_owners"] == {"0": str(fake.guild.id)}

    member = fake.guild.member
    dm = await fake.slash_command("where", user=member, guild_id=None)
    dm_reply = await dm.wait_for_original()
    assert "user" in dm.payload and "member" not in dm.payload and dm.payload["context"] == 1
    assert dm_reply.content == f"dm {fake.dm_channel(member.user).id} manage=False " + (
        "limit=10485760 nsfw=None"
    )
    with pytest.raises(ValueError, match="not registered for DMs"):
        await fake.slash_command("secret", user=member, guild_id=None)
    plain = await fake.slash_command("where", user=fake.guild.member, roles=[])
    assert (await plain.wait_for_original()).content.endswith(
        "manage=False limit=10485760 nsfw=False"
    )


# -- tests: failures and rate limits -------------------------------------------------------


async def test_rate_limited_followup_is_retried_by_discord_py(
    fake: FakeDiscord, bot: TinyBot
) -> None:
    limit = fake.rate_limit("POST /webhooks/*", count=1, retry_after=0.02)
    sent, msg = await render(fake)
    posts = sent.requests
    statuses = [r.status for r in posts if r.method == "POST" and "/webhooks/" in r.path]
    assert statuses == [429, 200]
    assert limit.hits[0].injected == "rate_limit" and limit.remaining == 0
    assert len(msg.attachments) == 2  # the retry re-sent both files


async def test_rate_limited_channel_message_is_retried(fake: FakeDiscord, bot: TinyBot) -> None:
    fake.rate_limit("POST /channels/*/messages", count=2, retry_after=0.02)
    sent = await fake.slash_command("announce", {"text": "hello <@&1>"})
    await sent.wait_for_original()
    posts = fake.requests_to("POST /channels/*/messages")
    assert [r.status for r in posts] == [429, 429, 200]
    assert posts[-1].files[0].data == PNG_A
    posted = fake.messages_in(fake.guild.text_channel)
    assert [m.content for m in posted if m.origin == "channel"] == ["hello <@&1>"]
    assert sent.original is not None and sent.original.ephemeral  # defer's ephemerality kept


async def test_expired_token_raises_not_found_and_bot_falls_back_to_channel(
    fake: FakeDiscord, bot: TinyBot
) -> None:
    sent = await fake.slash_command("slow", user=fake.guild.member)
    await sent.wait_for_callback()
    fake.expire_interaction(sent)
    bot.gate.set()

    fallback = await fake.wait_for_message(lambda m: m.origin == "channel")
    assert len(bot.errors) == 1 and isinstance(bot.errors[0], discord.NotFound)
    assert bot.errors[0].code == 10015
    assert fallback.content == f"<@{fake.guild.member.id}> your result is ready"
    assert fallback.pinged()["users"] == {fake.guild.member.id}
    assert fake.requests_to("POST /webhooks/*")[0].injected == "expired_token"


async def test_unknown_interaction_on_callback(fake: FakeDiscord, bot: TinyBot) -> None:
    sent = await fake.slash_command("late")
    fake.forget_interaction(sent)
    bot.gate.set()
    rec = await sent.wait_for_request("POST /interactions/*/callback")
    await fake.wait_until(lambda: bot.errors, poll=0.01)
    assert rec.status == 404 and rec.response["code"] == 10062
    assert isinstance(bot.errors[0], discord.NotFound) and bot.errors[0].code == 10062
    assert sent.callback is None


async def test_gateway_drop_is_resumed_and_interactions_still_arrive(
    fake: FakeDiscord, bot: TinyBot
) -> None:
    await fake.disconnect_bot()
    await fake.wait_until(lambda: any(f.get("op") == 6 for f in fake.gateway_frames))
    await fake.wait_until_connected()
    sent = await fake.slash_command("secret")
    assert (await sent.wait_for_original()).content == "s3cret"

    await fake.request_reconnect()  # op 7: discord.py reconnects and resumes again
    await fake.wait_until(lambda: [f for f in fake.gateway_frames if f.get("op") == 6][1:])
    await fake.wait_until_connected()
    again = await fake.slash_command("secret")
    assert (await again.wait_for_original()).content == "s3cret"
    assert len(fake.identifies) == 1  # resumed, never re-identified


# TinyBot does not handle the refusal: discord.py logs it.
@pytest.mark.expect_errors(logger="discord.app_commands.tree", match="40005")
async def test_files_over_the_interaction_upload_limit_are_refused(
    fake: FakeDiscord, bot: TinyBot
) -> None:
    sent = await fake.slash_command(
        "render", {"prompt": "big"}, attachment_size_limit=len(PNG_A) - 1
    )
    post = await sent.wait_for_request("POST /webhooks/*")
    assert post.status == 413 and post.response["code"] == 40005
    assert sent.original is not None and sent.original.loading  # still "thinking..."


# -- tests: the fake on its own --------------------------------------------------------------


async def test_rest_auth_content_type_and_limits(fake: FakeDiscord) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(fake.api_base + "/users/@me") as resp:
            assert resp.status == 401
        headers = {"Authorization": f"Bot {fake.token}"}
        async with http.get(fake.api_base + "/users/@me", headers=headers) as resp:
            assert resp.headers["Content-Type"] == "application/json"
            assert (await resp.json())["id"] == str(fake.application_id)
        channel = fake.guild.text_channel
        url = f"{fake.api_base}/channels/{channel.id}/messages"
        async with http.post(url, json={"content": "x" * 2001}, headers=headers) as resp:
            assert resp.status == 400 and (await resp.json())["code"] == 50035
        async with http.post(url, json={"content": ""}, headers=headers) as resp:
            assert (await resp.json())["code"] == 50006
        async with http.get(fake.api_base + "/nope", headers=headers) as resp:
            assert resp.status == 404
        fake.fail(
            "POST /channels/*/messages", status=403, code=50013, message="Missing Permissions"
        )
        async with http.post(url, json={"content": "hi"}, headers=headers) as resp:
            assert resp.status == 403 and (await resp.json())["code"] == 50013
        async with http.post(url, json={"content": "hi"}, headers=headers) as resp:
            assert resp.status == 200  # the fault was for one request only
    assert fake.requests_to("GET /nope")[0].extra["unhandled"]
    with pytest.raises(NoBotConnected):
        await fake.slash_command("render", {"prompt": "x"})


async def test_redirect_is_restored_on_exit() -> None:
    before = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
    async with FakeDiscord() as fake:
        assert fake.api_base == discord.http.Route.BASE
        assert fake.gateway_url == str(discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
    assert before == (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)


async def test_dms_reach_the_user_unless_closed(fake: FakeDiscord, bot: TinyBot) -> None:
    member = fake.guild.member
    sent = await fake.slash_command("dm_me", user=member)
    assert (await sent.wait_for_original()).content == "sent"
    (dm,) = fake.messages_in(fake.dm_channel(member.user))
    assert dm.content == "hello in private" and dm.guild_id is None

    fake.block_dms(member)
    refused = await fake.slash_command("dm_me", user=member)
    assert (await refused.wait_for_original()).content == "dms closed (50007)"


async def test_delete_original_response_removes_the_message(
    fake: FakeDiscord, bot: TinyBot
) -> None:
    sent = await fake.slash_command("oops")
    deleted = await fake.wait_for(f"DELETE /webhooks/*/{sent.token}/messages/@original")
    assert deleted.status == 204
    assert sent.original is None
    assert fake.deleted_messages[deleted.extra["message_id"]].content == "oops"


async def test_autocomplete_then_select_menu(fake: FakeDiscord, bot: TinyBot) -> None:
    typing = await fake.autocomplete("style", {"name": "an"}, focused="name")
    await typing.wait_for_callback()
    assert typing.callback_type == 8
    assert [c["value"] for c in typing.choices or []] == ["anime", "analog"]

    sent = await fake.slash_command("style", {"name": "oil"})
    msg = await sent.wait_for_original()
    picked = await fake.select_menu(msg, "style:pick", ["analog"])
    await picked.wait_for_callback()
    assert msg.content == "picked ['analog']" and msg.components == []


async def test_user_context_menu_resolves_the_member(fake: FakeDiscord, bot: TinyBot) -> None:
    target = fake.guild.admin
    sent = await fake.user_context_menu("Wave", target)
    reply = await sent.wait_for_original()
    assert reply.content == f"wave {target.id} admin"
    assert str(target.id) in sent.payload["data"]["resolved"]["members"]


@pytest.mark.expect_errors(logger="discord.app_commands.tree", match="10062")
async def test_a_callback_after_the_ack_deadline_is_unknown() -> None:
    async with FakeDiscord(interaction_ack_timeout=0.0) as fake:
        tiny = TinyBot(fake.guild.id)
        async with fake.run_bot(tiny):
            sent = await fake.slash_command("secret")
            rec = await fake.wait_for("POST /interactions/*/callback", status=404)
    assert rec.response == {"message": "Unknown interaction", "code": 10062}
    assert rec.injected == "expired_token" and sent.callback is None


async def test_expired_token_code_50027_and_unacknowledged_webhooks(fake: FakeDiscord) -> None:
    async with fake.run_bot(TinyBot(fake.guild.id)):
        sent = await fake.slash_command("secret")
        await sent.wait_for_callback()
    fake.expire_interaction(sent, code=50027)
    url = f"{fake.api_base}/webhooks/{fake.application_id}/{sent.token}/messages/@original"
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as resp:
            assert resp.status == 401 and (await resp.json())["code"] == 50027
        async with http.post(f"{fake.api_base}/webhooks/{fake.application_id}/nope") as resp:
            assert resp.status == 404 and (await resp.json())["code"] == 10015


async def test_a_wrong_token_fails_login_without_leaking(fake: FakeDiscord) -> None:
    with pytest.raises(discord.LoginFailure):
        async with fake.run_bot(TinyBot(fake.guild.id), token="wrong"):
            pass
    assert fake.requests_to("GET /users/@me")[0].status == 401


# -- tests: Discord's payload limits -----------------------------------------------------------

X = "x"
INPUT = "data.components.0.components.0"  # the text input of a one-input modal
ITEM = "components.0.components.0"  # the first item of the first action row


class ProbeBot(discord.Client):
    """Answers ``/probe`` with whatever a test sets as ``answer``; autocompletes ``choices``."""

    def __init__(self, guild_id: int) -> None:
        super().__init__(intents=discord.Intents.default(), guild_ready_timeout=0.05)
        self.tree = app_commands.CommandTree(self)
        self.guild_id = guild_id
        self.answer: Callable[[discord.Interaction], Awaitable[object]] | None = None
        self.choices: list[app_commands.Choice[str]] = []
        self.failures: list[discord.HTTPException] = []

    async def setup_hook(self) -> None:
        bot = self

        @app_commands.command(description="Answer as the test says")
        async def probe(interaction: discord.Interaction, q: str) -> None:
            assert bot.answer is not None
            try:
                await bot.answer(interaction)
            except discord.HTTPException as exc:
                bot.failures.append(exc)

        @probe.autocomplete("q")
        async def complete(
            interaction: discord.Interaction, current: str
        ) -> list[app_commands.Choice[str]]:
            return bot.choices

        guild = discord.Object(self.guild_id)
        self.tree.add_command(probe, guild=guild)
        await self.tree.sync(guild=guild)


@pytest.fixture
async def probe(fake: FakeDiscord) -> AsyncIterator[ProbeBot]:
    bot = ProbeBot(fake.guild.id)
    async with fake.run_bot(bot):
        yield bot


async def probe_callback(
    fake: FakeDiscord, probe: ProbeBot, answer: Callable[[discord.Interaction], Awaitable[object]]
) -> tuple[SentInteraction, Recorded]:
    """Run ``/probe`` answering with ``answer``; the first callback request the fake received."""
    probe.answer = answer
    sent = await fake.slash_command("probe", {"q": "x"})
    return sent, await sent.wait_for_request("POST /interactions/*/callback")


def error_fields(body: dict[str, Any]) -> list[str]:
    """The fields an Invalid Form Body names, dotted (``data.components.0.label``)."""
    found: list[str] = []

    def walk(node: dict[str, Any], path: list[str]) -> None:
        for key, value in node.items():
            if key == "_errors":
                found.append(".".join(path))
            else:
                walk(value, [*path, key])

    walk(body.get("errors") or {}, [])
    return found


def assert_refused(status: int, body: Any, field: str) -> None:
    assert status == 400, body
    assert body["code"] == 50035 and body["message"] == "Invalid Form Body"
    assert error_fields(body) == [field]


def embed(**parts: Any) -> dict[str, Any]:
    return {"embeds": [parts]}


def field_embed(name: str = "n", value: str = "v", count: int = 1) -> dict[str, Any]:
    return embed(fields=[{"name": name, "value": value}] * count)


def rows(*items: dict[str, Any], count: int = 1) -> dict[str, Any]:
    return {"components": [{"type": 1, "components": list(items)} for _ in range(count)]}


def six_thousand_characters(author: str = "") -> list[dict[str, Any]]:
    """Two embeds with 6,000 counted characters (+ ``author``), every counted part in use."""
    first = {"title": X * 256, "description": X * 4096}  # 4,352
    second = {
        "fields": [{"name": X * 200, "value": X * 1000}],  # 1,200
        "footer": {"text": X * 248},
        "author": {"name": X * 200 + author},
        "url": "https://example.com/" + X * 500,  # not counted
    }
    return [first, second]


def numbered_rows(count: int) -> list[dict[str, Any]]:
    return [{"type": 1, "components": [button(f"row{n}")]} for n in range(count)]


def button(custom_id: str | None = "go", **extra: Any) -> dict[str, Any]:
    item = {"type": 2, "style": 1, "label": "Go", **extra}
    if custom_id is not None:
        item["custom_id"] = custom_id
    return item


def select(options: int = 3, **extra: Any) -> dict[str, Any]:
    return {
        "type": 3,
        "custom_id": "pick",
        "options": [{"label": f"o{n}", "value": f"v{n}"} for n in range(options)],
        **extra,
    }


def option(**parts: str) -> dict[str, Any]:
    return select(options=0) | {"options": [{"label": "l", "value": "v", **parts}]}


MESSAGE_LIMITS = [
    pytest.param({"content": X * 2000}, {"content": X * 2001}, "content", id="content"),
    pytest.param(embed(title=X * 256), embed(title=X * 257), "embeds.0.title", id="embed-title"),
    pytest.param(
        embed(description=X * 4096),
        embed(description=X * 4097),
        "embeds.0.description",
        id="embed-description",
    ),
    pytest.param(
        field_embed(value=X * 1024),
        field_embed(value=X * 1025),
        "embeds.0.fields.0.value",
        id="embed-field-value",
    ),
    pytest.param(
        field_embed(name=X * 256),
        field_embed(name=X * 257),
        "embeds.0.fields.0.name",
        id="embed-field-name",
    ),
    pytest.param(field_embed(count=25), field_embed(count=26), "embeds.0.fields", id="fields"),
    pytest.param(
        embed(footer={"text": X * 2048}),
        embed(footer={"text": X * 2049}),
        "embeds.0.footer.text",
        id="embed-footer",
    ),
    pytest.param(
        embed(author={"name": X * 256}),
        embed(author={"name": X * 257}),
        "embeds.0.author.name",
        id="embed-author",
    ),
    pytest.param(
        {"embeds": [{"title": "t"}] * 10}, {"embeds": [{"title": "t"}] * 11}, "embeds", id="embeds"
    ),
    pytest.param(
        {"embeds": six_thousand_characters()},
        {"embeds": six_thousand_characters(author="y")},
        "embeds",
        id="embeds-total-6000",
    ),
    pytest.param(
        {"components": numbered_rows(5)},
        {"components": numbered_rows(6)},
        "components",
        id="action-rows",
    ),
    pytest.param(
        rows(*[button(f"b{n}") for n in range(5)]),
        rows(*[button(f"b{n}") for n in range(6)]),
        "components.0.components",
        id="buttons-per-row",
    ),
    pytest.param(
        rows(button(label=X * 80)),
        rows(button(label=X * 81)),
        f"{ITEM}.label",
        id="button-label",
    ),
    pytest.param(rows(button(X * 100)), rows(button(X * 101)), f"{ITEM}.custom_id", id="custom-id"),
    pytest.param(rows(button("a")), rows(button("")), f"{ITEM}.custom_id", id="custom-id-empty"),
    pytest.param(
        rows(button("a"), button("b")),
        rows(button("a"), button("a")),
        "components.0.components.1.custom_id",
        id="custom-id-duplicated",
    ),
    pytest.param(rows(button()), rows(button(None)), f"{ITEM}.custom_id", id="button-needs-id"),
    pytest.param(
        rows(button(None, style=5, url="https://example.com")),
        rows(button(None, style=5)),
        f"{ITEM}.url",
        id="link-button-needs-url",
    ),
    pytest.param(
        rows(select()), rows(select(), button()), "components.0.components", id="select-alone"
    ),
    pytest.param(rows(select(25)), rows(select(26)), f"{ITEM}.options", id="select-options-count"),
    pytest.param(rows(select(1)), rows(select(0)), f"{ITEM}.options", id="select-no-options"),
    pytest.param(
        rows(option(label=X * 100)),
        rows(option(label=X * 101)),
        f"{ITEM}.options.0.label",
        id="option-label",
    ),
    pytest.param(
        rows(option(value=X * 100)),
        rows(option(value=X * 101)),
        f"{ITEM}.options.0.value",
        id="option-value",
    ),
    pytest.param(
        rows(option(description=X * 100)),
        rows(option(description=X * 101)),
        f"{ITEM}.options.0.description",
        id="option-description",
    ),
    pytest.param(
        rows(select(placeholder=X * 150)),
        rows(select(placeholder=X * 151)),
        f"{ITEM}.placeholder",
        id="select-placeholder",
    ),
    pytest.param(
        rows(select(3, max_values=3)),
        rows(select(3, max_values=4)),
        f"{ITEM}.max_values",
        id="max-values-over-options",
    ),
    pytest.param(
        rows(select(3, min_values=0)),
        rows(select(3, min_values=-1)),
        f"{ITEM}.min_values",
        id="min-values",
    ),
    pytest.param(
        rows(select(3, min_values=2, max_values=2)),
        rows(select(3, min_values=3, max_values=2)),
        f"{ITEM}.min_values",
        id="min-over-max",
    ),
]


@pytest.mark.parametrize(("accepted", "refused", "field"), MESSAGE_LIMITS)
async def test_message_limits_refuse_just_over_and_accept_at_the_limit(
    fake: FakeDiscord, accepted: dict[str, Any], refused: dict[str, Any], field: str
) -> None:
    url = f"{fake.api_base}/channels/{fake.guild.text_channel.id}/messages"
    async with aiohttp.ClientSession(headers={"Authorization": f"Bot {fake.token}"}) as http:
        async with http.post(url, json=accepted) as resp:
            assert resp.status == 200, await resp.json()
            message_id = (await resp.json())["id"]
        async with http.post(url, json=refused) as resp:
            assert_refused(resp.status, await resp.json(), field)
        async with http.patch(f"{url}/{message_id}", json=refused) as resp:  # edits too
            assert_refused(resp.status, await resp.json(), field)
    assert len(fake.messages_in(fake.guild.text_channel)) == 1


async def test_responses_followups_edits_and_dms_are_held_to_the_limits(
    fake: FakeDiscord, probe: ProbeBot
) -> None:
    async def answer(interaction: discord.Interaction) -> None:
        for attempt in (
            lambda: interaction.response.send_message(X * 2001),  # refused: type 4 callback
            lambda: interaction.response.send_message(X * 2000),
            lambda: interaction.followup.send(X * 2001),
            lambda: interaction.followup.send(X * 2000),
            lambda: interaction.edit_original_response(embed=discord.Embed(title=X * 257)),
            lambda: interaction.edit_original_response(embed=discord.Embed(title=X * 256)),
            lambda: interaction.user.send(X * 2001),
            lambda: interaction.user.send(X * 2000),
        ):
            try:
                await attempt()
            except discord.HTTPException as exc:
                probe.failures.append(exc)

    sent, callback = await probe_callback(fake, probe, answer)
    assert_refused(callback.status, callback.response, "data.content")
    await fake.wait_until(lambda: len(probe.failures) == 4, poll=0.01)
    assert [(e.status, e.code) for e in probe.failures] == [(400, 50035)] * 4
    assert [e.text.split("\n")[-1] for e in probe.failures] == [
        "In data.content: Must be 2000 or fewer in length.",
        "In content: Must be 2000 or fewer in length.",
        "In embeds.0.title: Must be 256 or fewer in length.",
        "In content: Must be 2000 or fewer in length.",
    ]
    original = await sent.wait_for_original(lambda m: bool(m.embeds))
    assert original is not None and original.embeds[0]["title"] == X * 256
    dms = fake.dm_channel(fake.guild.member.user)
    await fake.wait_until(lambda: fake.messages_in(dms), poll=0.01)  # sent after the others
    (dm,) = fake.messages_in(dms)
    assert dm.content == X * 2000


def probe_modal(title: str = "Probe", **text_input: Any) -> discord.ui.Modal:
    modal = discord.ui.Modal(title=title, custom_id="probe-modal")
    modal.add_item(discord.ui.TextInput(**{"label": "Text", "custom_id": "probe:t", **text_input}))
    return modal


MODAL_LIMITS = [
    pytest.param({"title": X * 45}, {"title": X * 46}, "data.title", id="title"),
    pytest.param({"label": X * 45}, {"label": X * 46}, f"{INPUT}.label", id="label"),
    pytest.param(
        {"placeholder": X * 100},
        {"placeholder": X * 101},
        f"{INPUT}.placeholder",
        id="placeholder",
    ),
    pytest.param({"default": X * 4000}, {"default": X * 4001}, f"{INPUT}.value", id="value"),
    pytest.param(
        {"max_length": 4000}, {"max_length": 4001}, f"{INPUT}.max_length", id="max-length"
    ),
    pytest.param(
        {"min_length": 10, "max_length": 10},
        {"min_length": 11, "max_length": 10},
        f"{INPUT}.min_length",
        id="min-over-max",
    ),
]


@pytest.mark.parametrize(("accepted", "refused", "field"), MODAL_LIMITS)
async def test_modal_limits_refuse_just_over_and_accept_at_the_limit(
    fake: FakeDiscord,
    probe: ProbeBot,
    accepted: dict[str, Any],
    refused: dict[str, Any],
    field: str,
) -> None:
    opened, ok = await probe_callback(
        fake, probe, lambda i: i.response.send_modal(probe_modal(**accepted))
    )
    assert ok.status == 200, ok.response
    assert opened.modal is not None and opened.modal["custom_id"] == "probe-modal"

    refused_modal, bad = await probe_callback(
        fake, probe, lambda i: i.response.send_modal(probe_modal(**refused))
    )
    assert refused_modal.modal is None
    assert_refused(bad.status, bad.response, field)
    await fake.wait_until(lambda: probe.failures, poll=0.01)
    assert probe.failures[0].code == 50035


def choices(count: int = 1, name: str = "n", value: str = "v") -> list[app_commands.Choice[str]]:
    return [app_commands.Choice(name=f"{name}{n or ''}", value=value) for n in range(count)]


AUTOCOMPLETE_LIMITS = [
    pytest.param(choices(25), choices(26), "data.choices", id="count"),
    pytest.param(choices(name=X * 100), choices(name=X * 101), "data.choices.0.name", id="name"),
    pytest.param(
        choices(value=X * 100), choices(value=X * 101), "data.choices.0.value", id="value"
    ),
    pytest.param(choices(), choices(name=""), "data.choices.0.name", id="empty-name"),
]


@pytest.mark.parametrize(("accepted", "refused", "field"), AUTOCOMPLETE_LIMITS)
@pytest.mark.expect_errors(logger="discord.app_commands.tree", match="50035")
async def test_autocomplete_limits_refuse_just_over_and_accept_at_the_limit(
    fake: FakeDiscord,
    probe: ProbeBot,
    accepted: list[app_commands.Choice[str]],
    refused: list[app_commands.Choice[str]],
    field: str,
) -> None:
    probe.choices = accepted
    typing = await fake.autocomplete("probe", {"q": "x"}, focused="q")
    ok = await typing.wait_for_request("POST /interactions/*/callback")
    assert ok.status == 200 and len(typing.choices or []) == len(accepted)

    probe.choices = refused
    again = await fake.autocomplete("probe", {"q": "x"}, focused="q")
    bad = await again.wait_for_request("POST /interactions/*/callback")
    assert_refused(bad.status, bad.response, field)
    assert again.choices is None


def command(**parts: Any) -> dict[str, Any]:
    return {"name": "probe", "type": 1, "description": "Probe", **parts}


def string_option(**parts: Any) -> dict[str, Any]:
    return {"name": "q", "type": 3, "description": "Query", **parts}


COMMAND_LIMITS = [
    pytest.param(
        command(description=X * 100),
        command(description=X * 101),
        "0.description",
        id="description",
    ),
    pytest.param(command(), command(description=""), "0.description", id="empty-description"),
    pytest.param(command(name=X * 32), command(name=X * 33), "0.name", id="name-length"),
    pytest.param(command(name="a-b_c'd"), command(name="Probe"), "0.name", id="name-lowercase"),
    pytest.param(command(name="résumé"), command(name="two words"), "0.name", id="name-chars"),
    pytest.param(
        {"name": "Describe It", "type": 3},
        {"name": "D" * 33, "type": 3},
        "0.name",
        id="context-menu-name",
    ),
    pytest.param(
        command(name_localizations={"fr": "sonde"}),
        command(name_localizations={"fr": "Sonde"}),
        "0.name_localizations.fr",
        id="name-localization",
    ),
    pytest.param(
        command(description_localizations={"fr": X * 100}),
        command(description_localizations={"fr": X * 101}),
        "0.description_localizations.fr",
        id="description-localization",
    ),
    pytest.param(
        command(options=[string_option(name=f"o{n}") for n in range(25)]),
        command(options=[string_option(name=f"o{n}") for n in range(26)]),
        "0.options",
        id="options-count",
    ),
    pytest.param(
        command(options=[string_option(name="query")]),
        command(options=[string_option(name="Query")]),
        "0.options.0.name",
        id="option-name",
    ),
    pytest.param(
        command(options=[string_option(description=X * 100)]),
        command(options=[string_option(description=X * 101)]),
        "0.options.0.description",
        id="option-description",
    ),
    pytest.param(
        command(options=[string_option(choices=[{"name": X * 100, "value": "v"}])]),
        command(options=[string_option(choices=[{"name": X * 101, "value": "v"}])]),
        "0.options.0.choices.0.name",
        id="choice-name",
    ),
    pytest.param(
        command(options=[string_option(choices=[{"name": "n", "value": X * 100}])]),
        command(options=[string_option(choices=[{"name": "n", "value": X * 101}])]),
        "0.options.0.choices.0.value",
        id="choice-value",
    ),
    pytest.param(
        command(options=[string_option(choices=[{"name": "c", "value": "v"}] * 25)]),
        command(options=[string_option(choices=[{"name": "c", "value": "v"}] * 26)]),
        "0.options.0.choices",
        id="choices-count",
    ),
    pytest.param(
        command(options=[{"name": "sub", "type": 1, "description": "Sub", "options": []}]),
        command(options=[{"name": "sub", "type": 1, "description": "Sub", "options": [{}]}]),
        "0.options.0.options.0.name",
        id="subcommand-option",
    ),
]


@pytest.mark.parametrize(("accepted", "refused", "field"), COMMAND_LIMITS)
async def test_command_limits_refuse_just_over_and_accept_at_the_limit(
    fake: FakeDiscord, accepted: dict[str, Any], refused: dict[str, Any], field: str
) -> None:
    url = f"{fake.api_base}/applications/{fake.application_id}/guilds/{fake.guild.id}/commands"
    async with aiohttp.ClientSession(headers={"Authorization": f"Bot {fake.token}"}) as http:
        async with http.put(url, json=[accepted]) as resp:
            assert resp.status == 200, await resp.json()
            command_id = (await resp.json())[0]["id"]
        async with http.put(url, json=[accepted, refused]) as resp:
            body = await resp.json()
        assert_refused(resp.status, body, "1" + field[1:])
        async with http.post(url, json=refused) as resp:  # create one
            assert_refused(resp.status, await resp.json(), field[2:])
        async with http.patch(f"{url}/{command_id}", json=refused) as resp:  # edit one
            assert_refused(resp.status, await resp.json(), field[2:])
    assert fake.commands(fake.guild.id)[0]["name"] == accepted["name"]


def test_limits_discord_py_never_lets_a_bot_break_are_still_checked() -> None:
    def text_row(n: int) -> dict[str, Any]:
        text_input = {"type": 4, "style": 1, "custom_id": f"t{n}", "label": "L"}
        return {"type": 1, "components": [text_input]}

    modal = {"title": "T", "custom_id": "m", "components": [text_row(n) for n in range(5)]}
    assert modal_problem(modal) is None
    for components in ([text_row(n) for n in range(6)], []):
        problem = modal_problem({**modal, "components": components})
        assert problem is not None and problem.path == ("components",)
    duplicated = modal_problem({**modal, "components": [text_row(1), text_row(1)]})
    assert duplicated is not None and duplicated.code == "COMPONENT_CUSTOM_ID_DUPLICATED"
    text_input = {"type": 4, "style": 1, "custom_id": "t"}  # in a Label: no label of its own
    label = {"type": 18, "label": X * 45, "description": X * 100, "component": text_input}
    assert modal_problem({**modal, "components": [label]}) is None
    for key, size in (("label", 46), ("description", 101)):
        problem = modal_problem({**modal, "components": [{**label, key: X * size}]})
        assert problem is not None and problem.path == ("components", 0, key)
    problem = modal_problem({**modal, "title": ""})
    assert problem is not None and problem.errors() == {
        "title": {
            "_errors": [
                {"code": "BASE_TYPE_BAD_LENGTH", "message": "Must be between 1 and 45 in length."}
            ]
        }
    }
    v2 = {"flags": 1 << 15, "components": [{"type": 17, "components": numbered_rows(6)}]}
    assert message_problem(v2, components_v2=True) is None  # rows in a container: no 5 limit


# -- tests: attachment downloads -----------------------------------------------------------


async def test_attachment_urls_honour_range_requests(fake: FakeDiscord) -> None:
    data = bytes(range(256)) * 4
    upload = fake.make_attachment(data, "blob.bin")

    async with aiohttp.ClientSession() as http:

        async def get(wanted: str | None) -> tuple[int, Any, bytes]:
            headers = {"Range": wanted} if wanted else {}
            async with http.get(upload.url, headers=headers) as resp:
                return resp.status, resp.headers.copy(), await resp.read()

        status, headers, body = await get(None)
        assert (status, body) == (200, data) and "Content-Range" not in headers
        assert headers["Accept-Ranges"] == "bytes"
        for wanted, start, end in (
            ("bytes=10-19", 10, 19),
            ("bytes=0-0", 0, 0),
            ("bytes=1000-", 1000, 1023),
            ("bytes=1000-5000", 1000, 1023),  # the end is clamped to the last byte
            ("bytes=-24", 1000, 1023),  # the last 24 bytes
            ("bytes=-5000", 0, 1023),
        ):
            status, headers, body = await get(wanted)
            assert status == 206, wanted
            assert headers["Content-Range"] == f"bytes {start}-{end}/1024", wanted
            assert body == data[start : end + 1] and headers["Content-Length"] == str(len(body))
        for unsatisfiable in ("bytes=1024-", "bytes=5000-6000", "bytes=-0"):
            status, headers, body = await get(unsatisfiable)
            assert status == 416 and headers["Content-Range"] == "bytes */1024", unsatisfiable
        for ignored in ("bytes=20-10", "items=0-1", "bytes=0-1,5-6"):
            status, _, body = await get(ignored)
            assert (status, body) == (200, data), ignored

    recorded = fake.requests_to(f"GET /attachments/*/{upload.id}/blob.bin")
    assert recorded[1].headers["Range"] == "bytes=10-19" and recorded[1].status == 206
