"""The store's schema migrations: ``MIGRATIONS[n]`` brings a ``dialogues.db`` at schema ``n`` to ``n + 1``.

A store records in ``PRAGMA user_version`` how many of these it has run, and ``Store`` runs the rest in order, one
transaction each. So the list is append-only and numbered contiguously (``_v1`` is ``MIGRATIONS[0]``, ``_vN`` is
``MIGRATIONS[N - 1]``): a migration edited, reordered or removed once released would never run on the stores that
already counted past it, or would run another one's change in its place; and an older deskbot tells a store a newer
one migrated by its number alone (``PRAGMA user_version`` above ``len(MIGRATIONS)``). A change of schema, or a fix of
a released migration, is a new migration at the end (as ``_v10`` redoes ``_v8``).
"""

from __future__ import annotations

from collections.abc import Callable

import sqlite_utils


def _add_column(db: sqlite_utils.Database, table: str, column: str, kind: type,
                not_null_default: int | None = None) -> None:
    """Add ``column`` to ``table`` unless it is there already, which SQLite would refuse: a store that took a withdrawn
    migration (see ``_v10``) may hold a column before the migration that adds it now. ``not_null_default``: the value
    of the rows there, and of those inserted without it, the column NOT NULL."""
    if column not in db[table].columns_dict:
        db[table].add_column(column, kind, not_null_default=not_null_default)


def _v1(db: sqlite_utils.Database) -> None:
    db["conversations"].create(
        {"id": str, "channel": str, "user": str, "status": str, "slots": str, "fallbacks": int, "created": float,
         "updated": float},
        pk="id",
    )
    db["turns"].create(
        {"id": int, "conversation_id": str, "role": str, "text": str, "raw_text": str, "channel": str, "user": str,
         "created": float},
        pk="id",
        foreign_keys=[("conversation_id", "conversations", "id")],
    )
    db["turns"].create_index(["conversation_id", "id"])
    db["turns"].create_index(["created"])
    db["predictions"].create(
        {"turn_id": int, "reply_turn_id": int, "intent": str, "confidence": float, "ranking": str, "source": str,
         "model_version": str, "retrieval_score": float},
        pk="turn_id",
        foreign_keys=[("turn_id", "turns", "id")],
    )
    db["feedback"].create({"id": int, "turn_id": int, "value": int, "comment": str, "created": float}, pk="id",
                          foreign_keys=[("turn_id", "turns", "id")])
    db["handoffs"].create({"id": int, "conversation_id": str, "event": str, "reason": str, "created": float}, pk="id",
                          foreign_keys=[("conversation_id", "conversations", "id")])
    db["review_labels"].create({"id": int, "turn_id": int, "intent": str, "reviewer": str, "created": float}, pk="id",
                               foreign_keys=[("turn_id", "turns", "id")])
    db["review_labels"].create_index(["turn_id"])


def _v2(db: sqlite_utils.Database) -> None:
    """Agent answers kept as candidate historical answers, and indexes for the review queue."""
    db["answer_candidates"].create(
        {"id": int, "conversation_id": str, "question_turn_id": int, "agent_turn_id": int, "question": str,
         "answer": str, "created": float},
        pk="id",
        foreign_keys=[("conversation_id", "conversations", "id"), ("agent_turn_id", "turns", "id")],
    )
    db["feedback"].create_index(["turn_id"])
    db["predictions"].create_index(["reply_turn_id"])


def _v3(db: sqlite_utils.Database) -> None:
    """The custom action waiting for the answer to the question it asked (see ``Exchange.active_loop``)."""
    db["conversations"].add_column("active_loop", str)


def _v4(db: sqlite_utils.Database) -> None:
    """Indexes for the agents' inbox: conversations by status, a conversation's handoffs."""
    db["conversations"].create_index(["status", "updated"])
    db["handoffs"].create_index(["conversation_id", "id"])


def _v5(db: sqlite_utils.Database) -> None:
    """Platform messages acknowledged to their platform and not yet answered (see ``Store.receive``)."""
    db["pending"].create({"id": int, "key": str, "conversation_id": str, "channel": str, "user": str, "text": str,
                          "metadata": str, "received": float}, pk="id")
    db["pending"].create_index(["key"], unique=True)


def _v6(db: sqlite_utils.Database) -> None:
    """A bot reply's buttons (JSON), so that a widget reloaded on a question offers its choices again."""
    db["turns"].add_column("buttons", str)


def _v7(db: sqlite_utils.Database) -> None:
    """A customer's /resume, logged as a handoff until now, is a resume: the figures count the way back to
    the bot apart from the requests for a person."""
    db.execute("UPDATE predictions SET source = 'resume' WHERE source = 'handoff' "
               "AND turn_id IN (SELECT id FROM turns WHERE role = 'user' AND text = '/resume')")


def _v8(db: sqlite_utils.Database) -> None:
    """An agent's reply that its customer's platform refused, or could not be reached for: kept in the
    transcript, marked, and no end to the customer's wait."""
    _add_column(db, "turns", "undelivered", int)


def _v9(db: sqlite_utils.Database) -> None:
    """The highest turn id ``bot purge`` deleted. SQLite gives the highest ids out again once they are
    deleted, and a review item, a label or an acknowledged turn id naming a purged message would then name
    another customer's: a new turn's id is above this floor too (``_NEXT_TURN``)."""
    db.execute("CREATE TABLE IF NOT EXISTS id_floor (name TEXT PRIMARY KEY, high INTEGER NOT NULL)")


def _v10(db: sqlite_utils.Database) -> None:
    """Migration 8 once more: a store that took a withdrawn migration 8 (another change, since dropped)
    reached schema 8 without ``undelivered``, which the agents' inbox, the transcripts and the figures read."""
    _v8(db)


def _v11(db: sqlite_utils.Database) -> None:
    """When a kept platform message was answered: its key stays for the platform's retry window, so that a
    redelivery reaching the next server (one killed before its acknowledgement went out) is not answered again."""
    _add_column(db, "pending", "answered", float)


def _v12(db: sqlite_utils.Database) -> None:
    """The server that kept a platform message and answers it (see ``Store.adopt``); null for one kept before."""
    _add_column(db, "pending", "owner", str)


def _v13(db: sqlite_utils.Database) -> None:
    """The bot's answer to a kept platform message, logged and not sent yet (see ``Store.delivered``): a server
    killed while sending it, or stopped before the platform took it, leaves it for the next to send."""
    _add_column(db, "pending", "reply_turn", int)


def _v14(db: sqlite_utils.Database) -> None:
    """The key an agent's reply was sent with (``Store.add_agent_answer``): the agents' console sends a reply
    again with the same key when the answer to the first try was lost, and it is then not stored or
    delivered a second time. Unique within a conversation; null for a reply sent without one. A customer's
    message from a platform holds its platform key (``Store.receive``), which an edit or a deletion there finds
    it by (``Store.replace_message``)."""
    _add_column(db, "turns", "request_key", str)
    db.execute("CREATE UNIQUE INDEX IF NOT EXISTS idx_turns_request_key ON turns (conversation_id, request_key) "
               "WHERE request_key IS NOT NULL")


def _v15(db: sqlite_utils.Database) -> None:
    """Indexes for the figures (``dialogues.stats``): votes and handoffs by time, and the tryout conversations by
    channel, so that the figures since a moment read that window and not the whole store."""
    db["feedback"].create_index(["created"], if_not_exists=True)
    db["handoffs"].create_index(["created"], if_not_exists=True)
    db["conversations"].create_index(["channel"], if_not_exists=True)


def _v16(db: sqlite_utils.Database) -> None:
    """Which notice a bot turn said outside a turn (``Store.add_message``'s ``notice``): ``busy``, ``joined``
    or ``resumed``; null for anything else. ``Store.overdue`` counted any bot turn in a wait as the busy
    notice, and an agent's takeover notice on Slack and WeCom then kept its customer from ever being told
    that the agents are busy.

    Before this, the busy notice was the only bot turn stored with the button back to the bot (the
    ``/resume`` payload) while a customer waited, so those turns are marked ``busy``: a customer told before
    the upgrade is not told again in the same wait. (A takeover notice, which carries the same button, was
    stored only by the unreleased builds that added it, and counts as told once, as it did there.)"""
    _add_column(db, "turns", "notice", str)
    # LIKE first: a large store's every bot turn is not parsed as JSON, only those that may hold the button
    db.execute("""UPDATE turns SET notice = 'busy' WHERE role = 'bot' AND notice IS NULL """
               """AND buttons LIKE '%/resume%' AND EXISTS """
               """(SELECT 1 FROM json_each(CASE WHEN json_valid(buttons) THEN buttons ELSE '[]' END) """
               """WHERE json_extract(value, '$.payload') = '/resume')""")


def _v17(db: sqlite_utils.Database) -> None:
    """Agent answers found by their conversation and their agent's turn: an agent's reply looked for the
    conversation's open answer, and a purge for its answers (and, for each turn it deleted, the answers naming
    it), by reading every answer ever kept: 27 ms a reply and 0.4 s a purge at 200,000 answers."""
    db["answer_candidates"].create_index(["conversation_id", "id"], if_not_exists=True)
    db["answer_candidates"].create_index(["agent_turn_id"], if_not_exists=True)


def _v18(db: sqlite_utils.Database) -> None:
    """The agent who took a conversation over or handed it back (``Store.set_status``'s ``agent``): a second agent
    opening the inbox saw nothing of who had the customer, and answered them too. Null before, and for a change
    the customer or the bot made."""
    _add_column(db, "handoffs", "agent", str)


def _v19(db: sqlite_utils.Database) -> None:
    """The latest turn each agent has read in a conversation (``Store.mark_seen``), by their name as
    :func:`agent_key` writes it: an agent who opened a customer's conversation without replying still saw their
    messages counted as new in the inbox, as if nobody had read them."""
    db.execute("CREATE TABLE IF NOT EXISTS seen (conversation_id TEXT NOT NULL REFERENCES conversations(id), "
               "agent TEXT NOT NULL, turn_id INTEGER NOT NULL, PRIMARY KEY (conversation_id, agent))")


def _v20(db: sqlite_utils.Database) -> None:
    """A bot reply's custom payloads (JSON: an action's json_message, a response's custom:), which the web chat passed
    on to its page: a reloaded chat hands them on again, and the agents' transcript shows them. Null before, and for
    a reply without any; a reply of payloads alone kept before reads CUSTOM_PLACEHOLDER with none."""
    _add_column(db, "turns", "custom", str)


def _v21(db: sqlite_utils.Database) -> None:
    """Whether an action took the customer's message back (Exchange.reverted): 1 if so, null before and otherwise."""
    _add_column(db, "predictions", "reverted", int)


def _v22(db: sqlite_utils.Database) -> None:
    """When the agent a handoff names took the customer over after it (``Store._claim``): the agent who has a customer
    is who replied last since then, so that a lead's forced takeover makes a colleague's customer the lead's, not the
    colleague's who had replied. Null before, and for a handoff whose agent took it over as it was handed off."""
    _add_column(db, "handoffs", "taken", float)


def _v23(db: sqlite_utils.Database) -> None:
    """Whether an action started the conversation afresh on the customer's message (Exchange.restarted): 1 if so, null
    before and otherwise."""
    _add_column(db, "predictions", "restarted", int)


def _v24(db: sqlite_utils.Database) -> None:
    """A lead's forced takeover of a colleague's customer (``Store._claim``), kept beside the handoff it continues: it
    wrote the lead's name over the handoff's agent, and nobody could tell who had had the customer before. ``previous``:
    who had them (``Store.holder``); ``agent``: who has them from then (null: a takeover without a name)."""
    db.execute("CREATE TABLE IF NOT EXISTS takeovers (id INTEGER PRIMARY KEY, "
               "handoff_id INTEGER NOT NULL REFERENCES handoffs(id), conversation_id TEXT NOT NULL REFERENCES "
               "conversations(id), agent TEXT, previous TEXT NOT NULL, created FLOAT NOT NULL)")
    db.execute("CREATE INDEX IF NOT EXISTS idx_takeovers_handoff_id ON takeovers (handoff_id, id)")
    db.execute("CREATE INDEX IF NOT EXISTS idx_takeovers_conversation_id ON takeovers (conversation_id, id)")


def _v25(db: sqlite_utils.Database) -> None:
    """Agents' internal notes on a conversation (``Store.add_note``), for the agents alone: never sent to the customer,
    nor shown in their history. ``agent``: who wrote it, when they gave their name."""
    db.execute("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, conversation_id TEXT NOT NULL "
               "REFERENCES conversations(id), agent TEXT, text TEXT NOT NULL, created FLOAT NOT NULL)")
    db.execute("CREATE INDEX IF NOT EXISTS idx_notes_conversation_id ON notes (conversation_id, id)")


# The full-text index of what customers wrote (``_v26``), kept with their turns as they are written, rewritten
# (``Store.replace_message``, a redaction) and deleted (``Store.purge``).
_CUSTOMER_TEXT_TRIGGERS = (
    "CREATE TRIGGER IF NOT EXISTS turns_fts_insert AFTER INSERT ON turns WHEN new.role = 'user' BEGIN "
    "INSERT INTO turns_fts (rowid, text, raw_text) VALUES (new.id, new.text, new.raw_text); END",
    "CREATE TRIGGER IF NOT EXISTS turns_fts_delete AFTER DELETE ON turns WHEN old.role = 'user' BEGIN "
    "INSERT INTO turns_fts (turns_fts, rowid, text, raw_text) VALUES ('delete', old.id, old.text, old.raw_text); END",
    "CREATE TRIGGER IF NOT EXISTS turns_fts_update AFTER UPDATE OF text, raw_text ON turns WHEN old.role = 'user' "
    "BEGIN "
    "INSERT INTO turns_fts (turns_fts, rowid, text, raw_text) VALUES ('delete', old.id, old.text, old.raw_text); "
    "INSERT INTO turns_fts (rowid, text, raw_text) VALUES (new.id, new.text, new.raw_text); END",
)


def _v26(db: sqlite_utils.Database) -> None:
    """A full-text index of the customers' messages (``Search``): an agent's search read every message a customer had
    written, a second and more at 50,000 conversations. The trigram tokenizer finds any run of 3 characters or more
    in any letter case, with no word segmentation (退款申请 in 我的退款申请呢, as ab12 in AB12-XY); it holds no copy of the
    text (``content='turns'``), and the messages kept before are indexed here."""
    db.execute("CREATE VIRTUAL TABLE IF NOT EXISTS turns_fts USING fts5(text, raw_text, content='turns', "
               "content_rowid='id', tokenize='trigram')")
    for trigger in _CUSTOMER_TEXT_TRIGGERS:
        db.execute(trigger)
    db.execute("INSERT INTO turns_fts (rowid, text, raw_text) SELECT id, text, raw_text FROM turns WHERE role = 'user'")


def _v27(db: sqlite_utils.Database) -> None:
    """A reply's latest vote alone, with the latest comment given when it has none, as ``Store.add_feedback`` keeps
    it: a deskbot before kept a row a vote, each with up to 2,000 characters of a customer's comment, though only the
    latest is read, until the reply was voted on again."""
    latest = "(SELECT max(id) FROM feedback AS f WHERE f.turn_id = feedback.turn_id)"
    db.execute(f"UPDATE feedback SET comment = (SELECT f.comment FROM feedback AS f WHERE f.turn_id = feedback.turn_id "
               f"AND f.comment IS NOT NULL ORDER BY f.id DESC LIMIT 1) WHERE comment IS NULL AND id = {latest}")
    db.execute(f"DELETE FROM feedback WHERE id < {latest}")


def _v28(db: sqlite_utils.Database) -> None:
    """When an internal note was last edited by its author (``Store.edit_note``): the colleagues who read it before
    see it changed. Null before, and for a note never edited."""
    _add_column(db, "notes", "edited", float)


def _v29(db: sqlite_utils.Database) -> None:
    """A customer's conversations on a channel, latest first (``Store.transcript``'s ``others``), read at each look at a
    transcript: without it, every conversation the store holds."""
    db.execute("CREATE INDEX IF NOT EXISTS idx_conversations_user ON conversations (channel, user, updated)")


def _v30(db: sqlite_utils.Database) -> None:
    """The Rasa form an action activated (``ActiveLoop("order_form")``) while it waits for an answer (see
    ``Exchange.active_form``): the action's tracker names it as its active loop, as Rasa's does."""
    _add_column(db, "conversations", "active_form", str)


def _v31(db: sqlite_utils.Database) -> None:
    """A bot reply's messages in the order an action sent them (JSON, ``Exchange.messages``), where its text and custom
    would change it (a text after a payload): a reloaded web chat showed the action's two texts joined in one bubble.
    Null before, and for any other reply."""
    _add_column(db, "turns", "messages", str)


def _v32(db: sqlite_utils.Database) -> None:
    """A change of hands an agent makes without taking the customer themselves (``Store.pass_on``): a release back to
    the waiting customers (``agent`` null: nobody has them) or a transfer to a colleague. ``by_agent``: who made it
    (null before: the takeover's own ``agent``); ``previous`` is null for a takeover of a released customer, whom
    nobody had. SQLite keeps ``NOT NULL`` for good, so the table is copied without it."""
    db.execute("CREATE TABLE takeovers_v32 (id INTEGER PRIMARY KEY, "
               "handoff_id INTEGER NOT NULL REFERENCES handoffs(id), conversation_id TEXT NOT NULL REFERENCES "
               "conversations(id), agent TEXT, previous TEXT, by_agent TEXT, created FLOAT NOT NULL)")
    db.execute("INSERT INTO takeovers_v32 (id, handoff_id, conversation_id, agent, previous, created) "
               "SELECT id, handoff_id, conversation_id, agent, previous, created FROM takeovers")
    db.execute("DROP TABLE takeovers")
    db.execute("ALTER TABLE takeovers_v32 RENAME TO takeovers")
    db.execute("CREATE INDEX idx_takeovers_handoff_id ON takeovers (handoff_id, id)")
    db.execute("CREATE INDEX idx_takeovers_conversation_id ON takeovers (conversation_id, id)")


def _v33(db: sqlite_utils.Database) -> None:
    """The web client's own id of a customer's message (``Exchange.message_id``), which its Retry sends again: a
    server started since (a deploy) answers it with the reply kept (``Store.answer_to``), where it answered it anew
    and kept the message twice. Not unique: a client may use an id again in a later message, and that is answered."""
    _add_column(db, "turns", "message_id", str)
    db.execute("CREATE INDEX IF NOT EXISTS idx_turns_message_id ON turns (conversation_id, message_id) "
               "WHERE message_id IS NOT NULL")


def _v34(db: sqlite_utils.Database) -> None:
    """Each intent renamed or merged into another with ``bot relabel`` (``Store.relabel``): ``bot stats`` counted the
    answers the bot gave under the old name as labelled with another intent once their labels had the new one.
    None before: the renames made until then are not known until the same ``bot relabel`` is run again, which keeps
    them without moving a label twice. Not guessed from the labels: a correction moves them alike."""
    db.execute("CREATE TABLE IF NOT EXISTS intent_renames (id INTEGER PRIMARY KEY, old TEXT NOT NULL, "
               "new TEXT NOT NULL, reviewer TEXT, created FLOAT NOT NULL)")


def _v35(db: sqlite_utils.Database) -> None:
    """The web messages being answered, by conversation and ``message_id`` (``Store.claim``): a Retry reaching
    another server on the same store while the first was still answering (nothing of it kept yet) was answered
    again, and kept twice."""
    db.execute("CREATE TABLE IF NOT EXISTS answering (conversation_id TEXT NOT NULL, message_id TEXT NOT NULL, "
               "claimed FLOAT NOT NULL, PRIMARY KEY (conversation_id, message_id))")


def _v36(db: sqlite_utils.Database) -> None:
    """A kept platform message as the agents read it (``Store.receive``'s ``shown``), where the model reads it
    otherwise: the next server to answer it wrote the model's words into the transcript, "@someone" for each person a
    Slack customer had named, and without the picture that came with them."""
    _add_column(db, "pending", "shown", str)


def _v37(db: sqlite_utils.Database) -> None:
    """The server answering each claimed web message (``Store.claim``): a server killed mid-answer left its claim to
    stand for ``CLAIM_STALE_S``, and a Retry reaching another server waited that long; a gone server's claim is
    taken at once now, as its kept platform messages are (:meth:`Store.adopt`)."""
    _add_column(db, "answering", "server", str)


def _v38(db: sqlite_utils.Database) -> None:
    """The server that wrote each turn, handoff and takeover (``Store.serve``'s id; null for a command's, or a deskbot's
    from before): another server on the store finds what was said and done in the conversations its web chat sockets
    hear without pushing it twice (:meth:`Store.said_elsewhere`). An agent's reply sent through one server reached only
    the sockets open on that one, and a customer whose socket was on another heard it at their next reload."""
    for table in ("turns", "handoffs", "takeovers"):
        _add_column(db, table, "server", str)


# An agent's handback of a customer someone else had (``_v39``): a lead's, which ``Store.taken_from`` tells that agent
# of. Indexed alone: those of the agents' own customers, the most of them, are not read there.
HANDED_BACK = "event = 'open' AND previous IS NOT NULL AND agent IS NOT previous"


def _v39(db: sqlite_utils.Database) -> None:
    """The agent who had a customer an agent handed back to the bot (``Store.set_status``'s handback): a lead's handback
    with the admin token was kept as the admin's alone, and nothing said whose customer it had been, nor told that agent
    (``Store.taken_from``). Null before, and for a customer nobody had or the customer's own handback."""
    _add_column(db, "handoffs", "previous", str)
    db.execute(f"CREATE INDEX IF NOT EXISTS idx_handoffs_handed_back ON handoffs (conversation_id) WHERE {HANDED_BACK}")


def _v40(db: sqlite_utils.Database) -> None:
    """Each agent's claim of a customer handed off to nobody (``Store._claim``), which names them on the handoff itself:
    another server on the store read no new row, and its web chat sockets went on saying nobody had the customer until
    the agent's first reply (:meth:`Store.said_elsewhere`). ``server``: as ``_v38``'s."""
    db.execute("CREATE TABLE IF NOT EXISTS handoff_claims (id INTEGER PRIMARY KEY, conversation_id TEXT NOT NULL "
               "REFERENCES conversations(id), created FLOAT NOT NULL, server TEXT)")
    db.execute("CREATE INDEX IF NOT EXISTS idx_handoff_claims_conversation_id ON handoff_claims (conversation_id, id)")


def _v41(db: sqlite_utils.Database) -> None:
    """The conversations whose turn a server runs now (``Store.take_turn``): each server ran a conversation's turns one
    after another for itself alone, and two servers on the store behind a load balancer answered two of its messages at
    once, each on what it read before the other wrote: both answered the same question of a form, and a handoff after
    ``fallbacks_before_handoff`` misses came one miss late. ``server``: as ``_v38``'s; ``taken``: when."""
    db.execute("CREATE TABLE IF NOT EXISTS turn_leases (conversation_id TEXT PRIMARY KEY, server TEXT NOT NULL, "
               "taken FLOAT NOT NULL)")


def _v42(db: sqlite_utils.Database) -> None:
    """The labels by when and by whom they were given (``Store.label_answers``' ``given``): the turns one answer
    labelled, which a correction changes together, were found by reading every label the store holds, slow for the
    reviewer and the admin API alike once there were a hundred thousand."""
    db.execute("CREATE INDEX IF NOT EXISTS idx_review_labels_given ON review_labels (created, reviewer)")


def _v43(db: sqlite_utils.Database) -> None:
    """Each support team member's platform id beside the name their notes and takeovers were kept by in a channel's
    conversations (``Store.receive_note``'s ``member``): the holder was kept by name alone, and a colleague renamed on
    the platform while no server ran, or before a server had learnt their old name, held the customers they took, and
    signed their notes, by the old name for good; the next server renames them from it (``Store.kept_members``)."""
    db.execute("CREATE TABLE IF NOT EXISTS members (channel TEXT NOT NULL, member TEXT NOT NULL, name TEXT NOT NULL, "
               "PRIMARY KEY (channel, member))")


def _v44(db: sqlite_utils.Database) -> None:
    """The latest reload of the bot's files through the admin API (``Store.reloaded``): behind a load balancer a
    ``POST /admin/reload`` reached one server on the store, and the others served the files as they were before it
    (responses, bot.yml's reply settings, the actions, ``server.agents`` and their tokens: a token taken away still
    signed in there) until their restart. They reload too once they read it (:meth:`Store.latest_reload`).
    ``server``: as ``_v38``'s."""
    db.execute("CREATE TABLE IF NOT EXISTS reloads (id INTEGER PRIMARY KEY, server TEXT, created FLOAT NOT NULL)")


def _v45(db: sqlite_utils.Database) -> None:
    """The conversation's latest takeover when each agent last read it (``Store.mark_seen``'s ``takeover_id``): a
    customer passed to an agent and opened was kept as opened by that browser alone, and the agent's console in another
    browser announced the pass again (:meth:`Store.passed_to`). Null before, as for a pass nobody opened."""
    _add_column(db, "seen", "takeover_id", int)


def _v46(db: sqlite_utils.Database) -> None:
    """The conversation a web customer's page went on from (``Store.went_on``): one closed to the page as its customer
    signed in in another tab, whose messages the page still showed in the new one. The agents reading the new one saw
    nothing of them, nor where they were. Null for every conversation before."""
    _add_column(db, "conversations", "continues", str)


def _v47(db: sqlite_utils.Database) -> None:
    """Each conversation's reference (``Store.reference``), a random name the agents' webhook is told in the place of
    its id: the handoff notices carried the id itself, a web customer's key to their conversation (and a WeCom
    employee's userid), to everyone in the room the webhook posts to. Made at a conversation's first notice, and
    resolved to the conversation behind a token alone (``GET /admin/refs/{ref}``)."""
    db.execute("CREATE TABLE IF NOT EXISTS refs (ref TEXT PRIMARY KEY, conversation_id TEXT NOT NULL UNIQUE "
               "REFERENCES conversations(id))")


def _v48(db: sqlite_utils.Database) -> None:
    """When each conversation's slots were last rid of personal data (``Store.forget_idle_slots``): its ``updated`` then,
    so that a conversation written since is looked at again, and one looked at is not read again each hour. The slots
    an action set (an e-mail address a form collected) were kept as set for as long as the conversation, unredacted;
    null before, for every conversation, which the first round looks at."""
    _add_column(db, "conversations", "slots_checked", float)
    db.execute("CREATE INDEX IF NOT EXISTS idx_conversations_slots_unchecked ON conversations (updated) "
               "WHERE slots_checked IS NOT updated")



def _v49(db: sqlite_utils.Database) -> None:
    """The conversations a web customer's page went on in from another (``Store.went_on``), found by the one it left:
    each transcript an agent's console reads names them (``Store.others``), and without an index that read went over
    every conversation, 60-90 ms on a store of 200,000, at each console's poll. Few conversations have one: the index
    holds those alone."""
    db.execute("CREATE INDEX IF NOT EXISTS idx_conversations_continues ON conversations (continues) "
               "WHERE continues IS NOT NULL")

def _v50(db: sqlite_utils.Database) -> None:
    """Each takeover's agent and previous agent as ``agent_key`` reads names (``agent_folded``, ``previous_folded``;
    ``''`` for nobody), by index: the customers passed to an agent and taken from them (``Store.passed_to``,
    ``Store.taken_from``), which each console asks for at each poll, looked at every takeover kept until retention
    purged its conversation, 120 to 160 ms each with 100,000 kept. They look at the agent's own now; and the
    handbacks taken from an agent, told for a while (``HANDED_BACK_TOLD_S``), are found by their time, where every
    handback kept was looked at."""
    _add_column(db, "takeovers", "agent_folded", str)
    _add_column(db, "takeovers", "previous_folded", str)
    db.execute("UPDATE takeovers SET agent_folded = agent_key(agent), previous_folded = agent_key(previous)")
    db.execute("CREATE INDEX IF NOT EXISTS idx_takeovers_agent_folded ON takeovers (agent_folded)")
    db.execute("CREATE INDEX IF NOT EXISTS idx_takeovers_previous_folded ON takeovers (previous_folded)")
    db.execute(f"CREATE INDEX IF NOT EXISTS idx_handoffs_handed_back_created ON handoffs (created) WHERE {HANDED_BACK}")


def _v51(db: sqlite_utils.Database) -> None:
    """The messages lately sent to each conversation's customer on a platform that takes only so many a minute
    (``Store.take_send``: WeCom's 30 from one app to one employee), each by when it ended: each server counted its own,
    and two servers on the store together sent twice what WeCom takes, which answered 45009 or dropped the rest.
    Rows older than the platform's window are deleted as the next send is counted, and by ``Store.forget_old_keys``."""
    db.execute("CREATE TABLE IF NOT EXISTS paced_sends (id INTEGER PRIMARY KEY, conversation_id TEXT NOT NULL, "
               "ended FLOAT NOT NULL)")
    db.execute("CREATE INDEX IF NOT EXISTS idx_paced_sends_conversation_id ON paced_sends (conversation_id, ended)")
    db.execute("CREATE INDEX IF NOT EXISTS idx_paced_sends_ended ON paced_sends (ended)")
    # The platform messages of a conversation kept since its latest turn (Store.offered), which withdraw its choices.
    db.execute("CREATE INDEX IF NOT EXISTS idx_pending_conversation_id ON pending (conversation_id, received)")


# What the agents' inbox shows (``Store.poll``, ``Store.passed_to``, ``Store.taken_from``), kept by each write that
# changes it (``_v52``): the handed-off conversations, their turns and what each agent read of them, and the handoffs
# and takeovers of every conversation (a handback names a customer with the bot now). A customer's turn in a
# conversation with the bot, its prediction or its vote leave it as it was.
_INBOX_CHANGED = "UPDATE inbox_changes SET changes = changes + 1"


def _in_status(row: str, status: str) -> str:
    """SQL true where the conversation of ``row`` (``new`` or ``old``) is in ``status``."""
    return f"(SELECT status FROM conversations WHERE id = {row}.conversation_id) = '{status}'"


def _listed_triggers(status: str) -> dict[str, str]:
    """When a trigger moves a count of changes of the conversations in ``status`` as the agents' lists show them: a
    conversation coming in or out of it or changed, and a turn of one written, changed or deleted."""
    return {
        "conversations_insert": f"AFTER INSERT ON conversations WHEN new.status = '{status}'",
        "conversations_update": "AFTER UPDATE OF status, channel, user, slots, created, updated ON conversations "
                                f"WHEN '{status}' IN (old.status, new.status)",
        "conversations_delete": f"AFTER DELETE ON conversations WHEN old.status = '{status}'",
        "turns_insert": f"AFTER INSERT ON turns WHEN {_in_status('new', status)}",
        "turns_update": "AFTER UPDATE OF role, text, raw_text, user, created, undelivered ON turns "
                        f"WHEN {_in_status('new', status)}",
        "turns_delete": f"AFTER DELETE ON turns WHEN {_in_status('old', status)}",
    }


_INBOX_TRIGGERS = {
    **_listed_triggers("handed_off"),
    "seen_insert": f"AFTER INSERT ON seen WHEN {_in_status('new', 'handed_off')}",
    # a read repeated (each window of the agent's marks it) moves nothing: a takeover id null before reads as 0
    "seen_update": "AFTER UPDATE OF turn_id, takeover_id ON seen WHEN (old.turn_id IS NOT new.turn_id "
                   f"OR coalesce(old.takeover_id, 0) != coalesce(new.takeover_id, 0)) AND {_in_status('new', 'handed_off')}",
    **{f"{table}_{event.lower()}": f"AFTER {event} ON {table}" for table in ("handoffs", "takeovers")
       for event in ("INSERT", "UPDATE", "DELETE")},
}


def _v52(db: sqlite_utils.Database) -> None:
    """The agents' inbox's own count of changes (``Store.inbox_version``), which the triggers above move at each write
    that changes what the inbox shows: its ETag was the store's ``data_version``, which any commit moves, and with the
    bot answering a message a second every console read its inbox whole at each 3-second poll, nothing in it changed.
    SQLite's triggers keep it, so that every writer, another process's (``bot purge``, a ``sqlite3`` shell) too,
    moves it."""
    db.execute("CREATE TABLE IF NOT EXISTS inbox_changes (id INTEGER PRIMARY KEY CHECK (id = 1), "
               "changes INTEGER NOT NULL)")
    db.execute("INSERT OR IGNORE INTO inbox_changes (id, changes) VALUES (1, 0)")
    for name, when in _INBOX_TRIGGERS.items():
        db.execute(f"CREATE TRIGGER IF NOT EXISTS inbox_{name} {when} BEGIN {_INBOX_CHANGED}; END")


def _v53(db: sqlite_utils.Database) -> None:
    """The conversations whose customer a server is sending a message to now, all its pieces (``send_turns``,
    ``Store.take_turn`` with ``of="send"``): each server sent one at a time to a customer for itself alone, and a long
    answer's pieces sent by one server had another server's answer, or an agent's message, land between them. And when
    each conversation's customer was last told a channel's hint (``hints``, ``Store.hint_due``): each server remembered
    its own, and a customer whose pictures reached two servers was told "please type" by each. As ``turn_leases``
    (``_v41``) and ``paced_sends`` (``_v51``): ``server``, ``taken``; ``told``, the time."""
    db.execute("CREATE TABLE IF NOT EXISTS send_turns (conversation_id TEXT PRIMARY KEY, server TEXT NOT NULL, "
               "taken FLOAT NOT NULL)")
    db.execute("CREATE TABLE IF NOT EXISTS hints (conversation_id TEXT NOT NULL, hint TEXT NOT NULL, "
               "told FLOAT NOT NULL, PRIMARY KEY (conversation_id, hint))")
    db.execute("CREATE INDEX IF NOT EXISTS idx_hints_told ON hints (told)")


# A name of its own for each store, minted anew by each restore (``dialogues.store.restore``): two servers on one store
# read it alike, where a backup put back in its place, or another store, is named otherwise.
NEW_IDENTITY = "INSERT OR REPLACE INTO store_identity (id, identity) VALUES (1, lower(hex(randomblob(12))))"


def _reached(row: str) -> str:
    """SQL true where the conversation ``row`` (``new`` or ``old``) is one the agents reach, with a status: of a channel,
    and not ``bot chat``'s tryouts (``cli``, ``Store.TRYOUT_CHANNEL``)."""
    return f"({row}.status IS NOT NULL AND coalesce({row}.channel, 'cli') != 'cli')"


def _counted(row: str, step: str) -> str:
    """The statement that adds ``step`` to the count of ``row``'s status where the agents reach it (``_v54``)."""
    return (f"INSERT INTO listed_conversations (status, conversations) SELECT {row}.status, {step} "
            f"WHERE {_reached(row)} ON CONFLICT (status) DO UPDATE SET conversations = conversations + {step}")


def _v54(db: sqlite_utils.Database) -> None:
    """The store's name (``store_identity``, ``NEW_IDENTITY``) that begins the inbox's version (``Store.inbox_version``):
    it began with a name drawn by each connection as it opened, and behind a load balancer each server answered the
    ETag of another's answer, the same inbox, whole. And how many conversations the agents reach are in each status
    (``listed_conversations``, ``Store._listed``), kept by triggers, every writer's: counted from the status index at
    each poll of a console's tab of the conversations with the bot, 10 ms with 98,000 of them open."""
    db.execute("CREATE TABLE IF NOT EXISTS store_identity (id INTEGER PRIMARY KEY CHECK (id = 1), "
               "identity TEXT NOT NULL)")
    db.execute(NEW_IDENTITY)
    db.execute("CREATE TABLE IF NOT EXISTS listed_conversations (status TEXT PRIMARY KEY, conversations INTEGER NOT NULL)")
    for name, when, body in (("insert", "AFTER INSERT", [_counted("new", "1")]),
                             ("delete", "AFTER DELETE", [_counted("old", "-1")]),
                             ("update", "AFTER UPDATE OF status, channel", [_counted("old", "-1"), _counted("new", "1")])):
        statements = "".join(f"{statement}; " for statement in body)
        db.execute(f"CREATE TRIGGER IF NOT EXISTS listed_{name} {when} ON conversations BEGIN {statements}END")
    db.execute("INSERT OR REPLACE INTO listed_conversations (status, conversations) SELECT status, count(*) "
               f"FROM conversations new WHERE {_reached('new')} GROUP BY status")


def _v55(db: sqlite_utils.Database) -> None:
    """The key an agent's note was added with (``Store.add_note``), as a reply's (``_v14``): the agents' console adds a
    note again with the same key when the answer to the first try was lost, and it is then not kept a second time.
    Unique within a conversation; null for a note added without one."""
    _add_column(db, "notes", "request_key", str)
    db.execute("CREATE UNIQUE INDEX IF NOT EXISTS idx_notes_request_key ON notes (conversation_id, request_key) "
               "WHERE request_key IS NOT NULL")


# What the agents' tab of the conversations with the bot shows beside the inbox (``Store.poll`` with ``open``): those
# conversations, each with its customer's latest message, kept by each write that changes them (``_v56``).
_OPEN_CHANGED = "UPDATE inbox_changes SET open_changes = open_changes + 1"


def _v56(db: sqlite_utils.Database) -> None:
    """The count of changes of the conversations with the bot (``inbox_changes.open_changes``,
    ``Store.open_version``), which triggers move as the inbox's do (``_listed_triggers``), every writer's: the ETag of the agents' tab of those
    conversations was the connection's own version (SQLite's ``data_version`` after a name each connection drew), so
    that behind a load balancer each server answered another's ETag whole, the same page, and any commit (a prediction,
    a vote) moved it."""
    _add_column(db, "inbox_changes", "open_changes", int, not_null_default=0)
    for name, when in _listed_triggers("open").items():
        db.execute(f"CREATE TRIGGER IF NOT EXISTS open_{name} {when} BEGIN {_OPEN_CHANGED}; END")


def _v57(db: sqlite_utils.Database) -> None:
    """The thread of a Slack DM its customer wrote in last (``Store.reply_in``), where an agent's replies and the
    notices of the handoff go: kept in one server's memory, it was lost at a restart, and on a second server on the
    same store an agent's reply went to the DM's top level, away from the customer's question. None for a customer
    who writes at the top level."""
    db.execute("CREATE TABLE IF NOT EXISTS reply_threads (conversation_id TEXT PRIMARY KEY, thread TEXT NOT NULL)")


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_v1, _v2, _v3, _v4, _v5, _v6, _v7, _v8, _v9, _v10, _v11,
                                                              _v12, _v13, _v14, _v15, _v16, _v17, _v18, _v19, _v20,
                                                              _v21, _v22, _v23, _v24, _v25, _v26, _v27, _v28,
                                                              _v29, _v30, _v31, _v32, _v33, _v34, _v35, _v36,
                                                              _v37, _v38, _v39, _v40, _v41, _v42, _v43,
                                                              _v44, _v45, _v46, _v47, _v48, _v49, _v50,
                                                              _v51, _v52, _v53, _v54, _v55, _v56, _v57]
