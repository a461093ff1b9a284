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
from collections.abc import AsyncIterator, Iterator

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
    SentInteraction,
    StoredMessage,
    png_bytes,
)

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
