"""``bot init DIR --from-jsonl FILE``: a trainable bot from labelled messages, in the data's language."""

from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from bot.cli import cli
from bot.project import load_project
from bot.training import frozen_split
from tests.conftest import REPO

ENGLISH = [("where is my card?", "card_arrival"), ("my card still hasn't come", "card_arrival"),
           ("where is my card?", "card_arrival"), ("how do I top up?", "top_up"), ("add money to my account", "top_up"),
           ("what's the weather like", "oos")]
CHINESE = [("我的卡什么时候到", "card_arrival"), ("卡还没收到", "card_arrival"), ("怎么充值", "top_up"),
           ("往账户里加钱", "top_up")]


def import_bot(tmp_path: Path, rows: list[tuple[str, str]], *extra: str) -> tuple[Path, object]:
    data = tmp_path / "labelled.jsonl"
    data.write_text("".join(json.dumps({"text": t, "intent": i}, ensure_ascii=False) + "\n" for t, i in rows))
    root = tmp_path / "bot"
    return root, CliRunner().invoke(cli, ["init", str(root), "--from-jsonl", str(data), *extra])


def import_csv(tmp_path: Path, content: str) -> tuple[Path, Any]:
    """``content`` saved as tickets.csv (line ends as written), and what `bot init --from-csv` made of it."""
    data = tmp_path / "tickets.csv"
    data.write_text(content, encoding="utf-8", newline="")
    root = tmp_path / "bot"
    return root, CliRunner().invoke(cli, ["init", str(root), "--from-csv", str(data)])


def import_jsonl(tmp_path: Path, rows: list[dict[str, str]]) -> tuple[Path, Any]:
    """``rows`` saved as tickets.jsonl, a helpdesk's JSON export, and what `bot init --from-jsonl` made of it in
    ``tmp_path``'s folder jsonl-bot."""
    data = tmp_path / "tickets.jsonl"
    data.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    root = tmp_path / "jsonl-bot"
    return root, CliRunner().invoke(cli, ["init", str(root), "--from-jsonl", str(data)])


def test_english_messages_make_an_english_bot_without_duplicates_or_oos(tmp_path: Path) -> None:
    root, result = import_bot(tmp_path, ENGLISH)
    assert result.exit_code == 0, result.output
    assert "2 intents and 4 examples" in result.output and "(language: en)" in result.output
    assert "Next: write the answers of the 2 intents with a placeholder in responses.yml, then bot train" in result.output
    assert "1 out-of-scope (oos) text was left out" in result.output  # said, not silently dropped
    # with the line, for the shop to find it in its export
    assert (f"Lines that repeated an earlier line's text (spacing and case aside) were kept once: 1 "
            f"({tmp_path / 'labelled.jsonl'}:3).") in result.output
    project = load_project(root)
    assert project.config.language == "en" and project.config.base_model == "default"
    assert [(e.text, e.intent) for e in project.examples] == [
        ("where is my card?", "card_arrival"), ("my card still hasn't come", "card_arrival"),
        ("how do I top up?", "top_up"), ("add money to my account", "top_up")]
    assert [v.text for v in project.responses.templates["top_up"]] == [
        "Thanks for your message about top up. An agent will follow up with the details."]


def test_an_imported_bot_is_told_what_it_still_lacks_when_served(tmp_path: Path) -> None:
    """Served as imported, it told every customer an agent would follow up, handed "😀" and "tell me a joke"
    to whichever intent was closest, and offered Chinese customers "Card arrival": bot train and bot serve
    say so until the shop fills them in."""
    root, _ = import_bot(tmp_path, CHINESE)

    def notes() -> str:
        with socket.socket() as taken:  # serve stops at its port, after the notes
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            return CliRunner().invoke(cli, ["serve", str(root), "--port", str(taken.getsockname()[1])]).output

    said = notes()
    assert "note: 2 intents still answer with bot init's placeholder, which tells customers an agent will follow up: " \
           "card_arrival, top_up; write their answers in responses.yml" in said
    assert "note: nlu.yml has no oos intent" in said
    assert "note: 2 intents with no Chinese title in fallback.titles, so the fallback offers them to Chinese " \
           "customers by name, in English (\"Card arrival\"): card_arrival, top_up;" in said
    config = yaml.safe_load((root / "bot.yml").read_text())
    config.setdefault("fallback", {})["titles"] = {"card_arrival": "Card arrival", "top_up": {"zh": "充值"}}
    (root / "bot.yml").write_text(yaml.safe_dump(config, allow_unicode=True))
    responses = yaml.safe_load((root / "responses.yml").read_text())
    responses["responses"]["card_arrival"] = [{"text": "卡片寄出后 5 个工作日内送达。"}]
    (root / "responses.yml").write_text(yaml.safe_dump(responses, allow_unicode=True))
    said = notes()
    assert "1 intent with no Chinese title in fallback.titles, so the fallback offers it" in said  # English for both
    assert "note: 1 intent still answers with bot init's placeholder, which tells customers an agent will follow up: " \
           "top_up; write its answer in responses.yml" in said
    config["fallback"]["titles"]["card_arrival"] = "卡片到达"
    (root / "bot.yml").write_text(yaml.safe_dump(config, allow_unicode=True))
    (root / "responses.yml").write_text(yaml.safe_dump({"responses": {
        "card_arrival": [{"text": "卡片寄出后 5 个工作日内送达。"}], "top_up": [{"text": "在 App 的“钱包”里充值。"}],
        "oos": [{"text": "这个问题我帮不上忙。"}]}}, allow_unicode=True))
    nlu = yaml.safe_load((root / "nlu.yml").read_text())
    nlu["nlu"].append({"intent": "oos", "examples": "- 讲个笑话\n- 今天天气怎么样\n"})
    (root / "nlu.yml").write_text(yaml.safe_dump(nlu, allow_unicode=True))
    said = notes()
    assert "placeholder" not in said and "no oos intent" not in said and "fallback.titles" not in said, said


def test_a_message_labelled_with_several_intents_goes_to_its_most_frequent_one(tmp_path: Path) -> None:
    rows = ENGLISH + [("Where is my  card?", "top_up"), ("top up failed", "top_up"), ("top up failed", "card_arrival"),
                      ("add money to my account", "oos"), ("add money to my account", "oos")]
    root, result = import_bot(tmp_path, rows)
    assert result.exit_code == 0, result.output
    assert "3 texts had more than one intent" in result.output
    data = tmp_path / "labelled.jsonl"  # each named with its lines, for the wrong labels to be corrected in the file
    assert f"{data}:1: 'where is my card?' kept under 'card_arrival' (2 lines), not 'top_up' on line 7\n" in result.output
    assert f"{data}:5: 'add money to my account' kept under 'oos' (2 lines), not 'top_up' on line 5\n" in result.output
    assert f"{data}:8: 'top up failed' kept under 'top_up' (1 line), not 'card_arrival' on line 9\n" in result.output
    assert f"were kept once: 3 ({data}:3, {data}:7, {data}:9)." in result.output  # the repeated oos line left out
    assert [(e.text, e.intent) for e in load_project(root).examples] == [  # which loads: no example twice
        ("where is my card?", "card_arrival"), ("my card still hasn't come", "card_arrival"),
        ("how do I top up?", "top_up"), ("top up failed", "top_up")]  # a tie goes to the first label given


def test_chinese_messages_make_a_chinese_bot_on_the_multilingual_encoder(tmp_path: Path) -> None:
    root, result = import_bot(tmp_path, CHINESE)
    assert result.exit_code == 0, result.output
    project = load_project(root)
    assert project.config.language == "zh" and project.config.base_model == "multilingual"
    assert [v.text for v in project.responses.templates["top_up"]] == ["感谢您关于“top up”的留言，客服会尽快跟进。"]


def test_chinese_examples_are_refused_for_an_english_model_before_training(tmp_path: Path) -> None:
    """language: en on a Chinese bot trained the English model, scored 0 and was promoted."""
    root, result = import_bot(tmp_path, CHINESE)
    assert result.exit_code == 0, result.output
    config = root / "bot.yml"
    config.write_text(config.read_text().replace("language: zh", "language: en"))
    refused = CliRunner().invoke(cli, ["train", str(root), "--device", "cpu"])
    assert refused.exit_code == 1 and "Traceback" not in refused.output, refused.output
    assert (f"{config}: 4 of the 4 examples are in Chinese, which the English model it trains (default) cannot "
            "read: set language: zh, or multi for English and Chinese") in refused.output
    assert not (root / "models").exists() or not any((root / "models").glob("v*"))  # nothing trained or promoted
    config.write_text(config.read_text().replace("language: en", "language: zh").replace("base: default", "base: mpnet"))
    refused = CliRunner().invoke(cli, ["train", str(root), "--device", "cpu"])
    assert refused.exit_code == 1 and ("which the English model it trains (mpnet) cannot read: set model.base: default, "
                                       "which is the multilingual encoder for language: zh") in refused.output


def test_demo_and_from_jsonl_together_are_refused(tmp_path: Path) -> None:
    """It built the bot from the file alone, the --demo unsaid."""
    root, result = import_bot(tmp_path, CHINESE, "--demo")
    assert result.exit_code == 2 and "--demo and --from-jsonl each give the bot's files: use one" in result.output
    assert not root.exists()


def test_a_mix_makes_a_bilingual_bot_with_a_placeholder_in_each_language(tmp_path: Path) -> None:
    root, result = import_bot(tmp_path, ENGLISH + CHINESE)
    assert result.exit_code == 0, result.output
    project = load_project(root)
    assert project.config.language == "multi"
    variants = project.responses.templates["card_arrival"]
    assert [(v.language, v.text[:6]) for v in variants] == [(None, "Thanks"), ("zh", "感谢您关于“")]


def test_a_single_intent_or_an_existing_bot_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    root, result = import_bot(tmp_path, [("where is my card?", "card_arrival")])
    assert result.exit_code != 0 and "at least two intents" in result.output
    assert not root.exists()
    root, result = import_bot(tmp_path, ENGLISH)
    assert result.exit_code == 0
    before = (root / "nlu.yml").read_text()
    _, again = import_bot(tmp_path, CHINESE)
    assert again.exit_code != 0 and "--force" in again.output
    assert (root / "nlu.yml").read_text() == before
    _, forced = import_bot(tmp_path, CHINESE, "--force")
    assert forced.exit_code == 0 and yaml.safe_load((root / "bot.yml").read_text())["language"] == "zh"


def test_a_text_or_intent_that_is_no_text_is_refused_with_its_line(tmp_path: Path) -> None:
    """A list as the intent made an intent named "['get_refund', 'x']", without a word."""
    for row, problem in [({"text": "refund now", "intent": ["get_refund", "x"]}, "the intent must be text, not ['get_refund', 'x']"),
                         ({"text": {"a": 1}, "intent": "top_up"}, "the text must be text, not {'a': 1}"),
                         ({"text": "hi", "intent": True}, "the intent must be text, not True")]:
        data = tmp_path / "labelled.jsonl"
        data.write_text("".join(json.dumps({"text": t, "intent": i}) + "\n" for t, i in ENGLISH) + json.dumps(row) + "\n")
        result = CliRunner().invoke(cli, ["init", str(tmp_path / "bot"), "--from-jsonl", str(data)])
        assert result.exit_code == 1 and f"{data}:{len(ENGLISH) + 1}: {problem}" in result.output
        assert not (tmp_path / "bot").exists()


def test_a_text_longer_than_a_customers_message_is_left_out_with_its_line(tmp_path: Path) -> None:
    """A whole ticket thread exported as the question became one 50,000-character example of nlu.yml, which no
    customer could send (the server takes 4,000 characters) and of which the classifier reads 64 tokens; then every
    such line refused the whole export, to be cut by hand, where history.csv leaves such a question out. They are left
    out, with their answers, and named; the bot is made of the others."""
    data = tmp_path / "labelled.jsonl"
    data.write_text("".join(json.dumps({"text": t, "intent": i}, ensure_ascii=False) + "\n" for t, i in ENGLISH)
                    + json.dumps({"text": "refund " * 7000, "intent": "top_up", "answer": "Refunds take 5 days."}) + "\n"
                    + json.dumps({"text": "我要退款。" * 900, "intent": "refund"}, ensure_ascii=False) + "\n")
    result = CliRunner().invoke(cli, ["init", str(tmp_path / "bot"), "--from-jsonl", str(data)])
    assert result.exit_code == 0, result.output
    assert (f"note: 2 texts longer than a customer's message may be (4,000: server.max_message_chars), left out: "
            f"{data}:{len(ENGLISH) + 1}, {data}:{len(ENGLISH) + 2}; keep the customer's question alone on those lines "
            "to learn from them") in result.output
    project = load_project(tmp_path / "bot")
    assert sorted({e.intent for e in project.examples}) == ["card_arrival", "top_up"] and not project.history
    assert max(len(e.text) for e in project.examples) < 100


def test_every_row_bot_init_refuses_is_told_at_once(tmp_path: Path) -> None:
    """An export's rows at fault were refused at the first; the shop fixed it, ran bot init again, and was told of
    the next one, a run each. Every row refused is told in one run, each with its line, and the rows between them (a
    ticket's whole thread, left out) are read still."""
    thread = "refund " * 700
    data = tmp_path / "tickets.csv"
    data.write_text(f"question,intent,answer\r\nwhere is my card?,card_arrival,\r\n{thread},top_up,\r\n"
                    f"how do I top up?,top_up,\r\n  ,top_up,\r\nadd money,,\r\n{thread},card_arrival,\r\n",
                    encoding="utf-8", newline="")
    result = CliRunner().invoke(cli, ["init", str(tmp_path / "bot"), "--from-csv", str(data)])
    assert result.exit_code == 1, result.output
    told = [line.split(f"{data}:", 1)[1].split(": ", 1) for line in result.output.splitlines() if str(data) in line]
    assert [(int(at), why.split(";")[0]) for at, why in told] == [
        (5, "the question is empty"), (6, "a row without an intent needs an answer, which the bot gives to close questions")]
    data = tmp_path / "labelled.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in [
        {"text": ENGLISH[0][0], "intent": ENGLISH[0][1]}, {"text": "how do I top up?", "intent": "top_up", "answer": 5},
        {"text": ENGLISH[1][0], "intent": ENGLISH[1][1]}, {"text": "add money", "intent": "top_up", "answer": ["a"]}]))
    result = CliRunner().invoke(cli, ["init", str(tmp_path / "bot"), "--from-jsonl", str(data)])
    assert result.exit_code == 1 and f"{data}:2: the answer must be text, not 5" in result.output and \
        f"{data}:4: the answer must be text" in result.output, result.output
    assert not (tmp_path / "bot").exists()


def test_files_joined_each_with_its_byte_order_mark_are_read_as_one(tmp_path: Path) -> None:
    """Two exports joined (cat a.jsonl b.jsonl), each opening with a byte order mark, stopped at the second's first
    line with "Unexpected UTF-8 BOM (decode using utf-8-sig)"."""
    data = tmp_path / "labelled.jsonl"
    part = "\ufeff" + "".join(json.dumps({"text": t, "intent": i}) + "\r\n" for t, i in ENGLISH)
    data.write_text(part + part.replace("?", "??"), encoding="utf-8", newline="")
    result = CliRunner().invoke(cli, ["init", str(tmp_path / "bot"), "--from-jsonl", str(data)])
    assert result.exit_code == 0, result.output
    assert load_project(tmp_path / "bot").intents == ["card_arrival", "top_up"]


def test_names_and_texts_that_nlu_yml_reads_otherwise_still_make_a_bot_that_loads(tmp_path: Path) -> None:
    rows = [(" see [order](id) now", " refund "), ("see order now", "refund{"), ("退款一部分", "退款（部分）"),
            ("line\u2028separator", "refund{")]  # U+2028 inside a JSON string is not a line break
    root, result = import_bot(tmp_path, rows)
    assert result.exit_code == 0, result.output
    project = load_project(root)
    assert sorted(project.intents) == ["refund", "refund{", "退款(部分)"]  # trimmed and NFKC-normalised, as a payload arrives
    assert [(e.text, e.intent) for e in project.examples if e.intent == "refund"] == [("see order now", "refund")]
    shown = project.responses.render("refund{", "web", {}, "en")  # the brace is text, not a variable
    assert shown is not None and shown.text == "Thanks for your message about refund{. An agent will follow up with the details."
    for reserved in ("handoff", "resume"):
        (tmp_path / reserved).mkdir()
        _, refused = import_bot(tmp_path / reserved, [("b", "other"), ("a", reserved)])
        assert refused.exit_code == 1 and f"labelled.jsonl:2: intent {reserved!r}: /{reserved} is the bot's own button payload" in refused.output
    (tmp_path / "blank").mkdir()
    _, refused = import_bot(tmp_path / "blank", [("b", "other"), ("a", " \u200b ")])  # nothing left once normalised
    assert refused.exit_code == 1 and "labelled.jsonl:2: an intent name is empty" in refused.output


def test_a_message_written_wholly_in_quotes_is_learnt_without_them_and_the_bot_loads(tmp_path: Path) -> None:
    """An example in quotes, curly, corner or straight, is refused in an examples block, where they are kept as text: a
    ticket whose customer quoted their whole message made a bot that did not load. The quotes say nothing of what was
    asked. Nor does a "#" read as a note's there: joined to its word, it is the customer's; nor HTML the export
    escaped, which the block would refuse as HTML once read."""
    rows = [("“您好”", "greet"), ("hello", "greet"), ('"bye now"', "bye"), ("goodbye", "bye"), ("'ok' I said 'thanks'", "bye"),
            ("「你好」", "greet"), ("hi # need help", "greet"), ("「再见」和「拜拜」", "bye"),
            ("&lt;b&gt;bye&lt;/b&gt; &amp;amp; thanks", "bye")]  # HTML the export escaped: refused in nlu.yml as HTML
    root, result = import_bot(tmp_path, rows)
    assert result.exit_code == 0, result.output
    assert sorted(e.text for e in load_project(root).examples) == [
        "'ok' I said 'thanks'", "bye & thanks", "bye now", "goodbye", "hello", "hi #need help", "「再见」和「拜拜」", "你好",
        "您好"]


def test_init_refuses_to_replace_a_projects_data_and_force_replaces_all_of_it(tmp_path: Path) -> None:
    """A Rasa project's nlu.yml is not overwritten unasked; over a trained starter bot, --force leaves no
    answer of the old bot behind for intents the new one lacks."""
    rasa = tmp_path / "rasa"
    rasa.mkdir()
    (rasa / "nlu.yml").write_text('version: "3.1"\nnlu:\n- intent: mine\n')
    result = CliRunner().invoke(cli, ["init", str(rasa)])
    assert result.exit_code == 1 and "already has nlu.yml; use --force" in result.output
    assert "intent: mine" in (rasa / "nlu.yml").read_text()
    # Nor any other file the demo brings: a project's README, its own test file or actions were replaced unsaid.
    shop = tmp_path / "odd shop"
    (shop / "actions").mkdir(parents=True)
    for name in ("README.md", "test.jsonl", "actions/orders.py"):
        (shop / name).write_text("mine")
    result = CliRunner().invoke(cli, ["init", str(shop), "--demo"])
    assert result.exit_code == 1, result.output
    assert "already has README.md, actions/orders.py, test.jsonl; use --force" in result.output
    assert all((shop / name).read_text() == "mine" for name in ("README.md", "test.jsonl", "actions/orders.py"))
    result = CliRunner().invoke(cli, ["init", str(shop / "bot")])
    assert result.exit_code == 0 and result.output.endswith(f"Next: bot train '{shop / 'bot'}'\n")
    (tmp_path / "dotted").mkdir()  # made in ".": named after its folder (bot.yml said name: '')
    data = tmp_path / "dotted.jsonl"
    data.write_text("".join(json.dumps({"text": t, "intent": i}) + "\n" for t, i in ENGLISH))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path / "dotted")
        assert CliRunner().invoke(cli, ["init", ".", "--from-jsonl", str(data)]).exit_code == 0
    assert load_project(tmp_path / "dotted").config.name == "dotted"

    root = tmp_path / "bot"
    assert CliRunner().invoke(cli, ["init", str(root)]).exit_code == 0
    assert (root / "history.jsonl").read_text()  # the starter's answers, for the starter's intents
    root, result = import_bot(tmp_path, ENGLISH, "--force")
    assert result.exit_code == 0, result.output
    assert (root / "history.jsonl").read_text() == ""
    assert load_project(root).intents == ["card_arrival", "top_up"]  # which loads: nothing refers to the old intents


def test_init_writes_bot_yml_for_its_owner_alone(tmp_path: Path, common_umask: None) -> None:
    """bot.yml comes to hold the admin token and the channels' secrets, and `bot init` made it with the umask's mode
    (0644): every account on the machine could read them. A starter's or the demo's data keeps the umask's; a bot
    made from a ticket export holds its customers' questions, as they wrote them, in nlu.yml and history.jsonl, and
    so does the frozen evaluation set its first training draws from nlu.yml: the store keeps such words for its owner
    alone, and these showed them to every account on the machine."""
    for args in (["init", str(tmp_path / "starter")], ["init", str(tmp_path / "demo"), "--demo"]):
        assert CliRunner().invoke(cli, args).exit_code == 0
    imported, result = import_bot(tmp_path, ENGLISH)
    assert result.exit_code == 0, result.output
    for root, data in ((tmp_path / "starter", 0o644), (tmp_path / "demo", 0o644), (imported, 0o600)):
        modes = {name: (root / name).stat().st_mode & 0o777 for name in ("bot.yml", "nlu.yml", "history.jsonl")}
        assert modes == {"bot.yml": 0o600, "nlu.yml": data, "history.jsonl": data}, root
    frozen_split(load_project(imported))  # as the first training holds out its tenth
    assert (imported / "models" / "evaluation.jsonl").stat().st_mode & 0o777 == 0o600


def test_a_ticket_exports_personal_data_is_redacted_as_the_store_redacts_it(tmp_path: Path) -> None:
    """A helpdesk export holds what its customers wrote: their emails, card and phone numbers went whole into nlu.yml
    and history.jsonl, and from there into the model, its n-grams and its answer index, where the store and `bot
    export` keep placeholders."""
    rows = [{"text": "my email is jane.doe@example.com, where is my order", "intent": "track_order",
             "answer": "It ships tomorrow."},
            {"text": "where is my parcel", "intent": "track_order"},
            {"text": "card 4111 1111 1111 1111 was charged twice, refund please", "intent": "refund"},
            {"text": "my name is Jane Doe and I want a refund, call +44 7911 123456", "intent": "refund"}]
    data = tmp_path / "tickets.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    root = tmp_path / "bot"
    result = CliRunner().invoke(cli, ["init", str(root), "--from-jsonl", str(data)])
    assert result.exit_code == 0, result.output
    written = (root / "nlu.yml").read_text() + (root / "history.jsonl").read_text()
    for personal in ("jane.doe@example.com", "4111", "7911", "Jane Doe"):
        assert personal not in written
    assert sorted(e.text for e in load_project(root).examples) == [
        "card [CARD] was charged twice, refund please", "my email is [EMAIL], where is my order",
        "my name is [NAME] and I want a refund, call [PHONE]", "where is my parcel"]
    assert json.loads((root / "history.jsonl").read_text()) == {
        "question": "my email is [EMAIL], where is my order", "answer": "It ships tomorrow.", "intent": "track_order"}


def test_init_that_cannot_write_a_file_leaves_the_bot_there_as_it_was(tmp_path: Path) -> None:
    """With a folder where history.jsonl should be, --force wrote the new bot.yml, nlu.yml and responses.yml before it
    failed, over the old bot's: a bot of two halves, with no file named."""
    root = tmp_path / "bot"
    assert CliRunner().invoke(cli, ["init", str(root)]).exit_code == 0
    (root / "history.jsonl").unlink()
    (root / "history.jsonl").mkdir()
    before = {name: (root / name).read_text() for name in ("bot.yml", "nlu.yml", "responses.yml")}
    _, result = import_bot(tmp_path, ENGLISH, "--force")
    assert result.exit_code == 1 and f"cannot create the bot in {root}: {root / 'history.jsonl'}: Is a directory" \
        in result.output, result.output
    assert {name: (root / name).read_text() for name in before} == before
    assert sorted(path.name for path in root.iterdir()) == ["bot.yml", "history.jsonl", "nlu.yml", "responses.yml"]
    data = tmp_path / "labelled.jsonl"
    result = CliRunner().invoke(cli, ["init", str(root / "bot.yml" / "bot"), "--from-jsonl", str(data)])
    assert result.output.endswith(f"cannot create the bot in {root / 'bot.yml' / 'bot'}: Not a directory\n")


def test_starter_that_cannot_write_a_file_leaves_the_bot_there_as_it_was_and_names_what_it_keeps(
        tmp_path: Path) -> None:
    """With a folder where history.jsonl should be, the starter copied its file into that folder and said it created
    the bot, whose `bot train` then failed on 'history.jsonl: Is a directory'; and over the demo it left the demo's
    actions and test set unsaid."""
    root = tmp_path / "bot"
    assert CliRunner().invoke(cli, ["init", str(root), "--demo"]).exit_code == 0
    (root / "history.jsonl").unlink()
    (root / "history.jsonl").mkdir()
    before = {name: (root / name).read_text() for name in ("bot.yml", "nlu.yml", "responses.yml")}
    result = CliRunner().invoke(cli, ["init", str(root), "--force"])
    assert result.exit_code == 1 and f"cannot create the bot in {root}: {root / 'history.jsonl'}: Is a directory" \
        in result.output, result.output
    assert {name: (root / name).read_text() for name in before} == before
    assert not any((root / "history.jsonl").iterdir())
    (root / "history.jsonl").rmdir()
    result = CliRunner().invoke(cli, ["init", str(root), "--force"])
    assert result.exit_code == 0, result.output
    assert f"Left as they were in {root}: LICENSE, README.md, actions/, test.jsonl, test_traditional.jsonl;" \
        in result.output
    assert load_project(root).intents == load_project(REPO / "bot" / "starter").intents


def test_init_over_a_trained_bot_says_its_models_answer_as_before_until_bot_train(
        small_bot: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The old versions kept serving the old intents, buttons and answers, and nothing said so."""
    from bot.server import load_serving_model

    root = Path(shutil.copytree(small_bot, tmp_path / "bot"))
    data = tmp_path / "labelled.jsonl"
    data.write_text("".join(json.dumps({"text": t, "intent": i}) + "\n" for t, i in ENGLISH))
    result = CliRunner().invoke(cli, ["init", str(root), "--from-jsonl", str(data), "--force"])
    assert result.exit_code == 0 and "keeps the versions trained on the files replaced here" in result.output
    assert f"{root / 'models' / 'evaluation.jsonl'} holds the replaced data's held-out examples" in result.output
    with caplog.at_level(logging.WARNING, logger="deskbot"):
        load_serving_model(load_project(root), device="cpu")
    assert ("only in the model: cancel_order, contact_human_agent, get_refund, track_order; only in nlu.yml: "
            "card_arrival, top_up") in caplog.text


def test_importing_labelled_lines_loads_no_model_library(tmp_path: Path) -> None:
    """Reading the file imported torch (seconds, and hundreds of MB) for a type annotation."""
    data = tmp_path / "labelled.jsonl"
    data.write_text("".join(json.dumps({"text": t, "intent": i}) + "\n" for t, i in ENGLISH))
    code = ("import sys; from bot.cli import cli; "
            f"cli(['init', {str(tmp_path / 'bot')!r}, '--from-jsonl', {str(data)!r}], standalone_mode=False); "
            "print(sorted({'torch', 'transformers', 'sentence_transformers'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]" and (tmp_path / "bot" / "nlu.yml").exists()


def test_a_line_that_is_no_object_with_text_and_intent_is_named_in_plain_words(tmp_path: Path) -> None:
    """A string or a list on a line was refused as "string indices must be integers", a line without its
    text as "'text'"; one whose text or intent is under the name a helpdesk's CSV export gives it ("question",
    "Intent", "问题") as "no 'text'" alone, when bot init --from-csv reads those names."""
    data = tmp_path / "labelled.jsonl"
    for line, problem in [('"where is my card"', "a line is one JSON object, not str"),
                          ('["where is my card", "card_arrival"]', "a line is one JSON object, not list"),
                          ('{"question": "where is my card", "intent": "card_arrival"}',
                           "no 'text'; rename the line's 'question' to 'text'"),
                          ('{"text": "where is my card"}', "no 'intent'"),
                          ('{"text": "where is my card", "Intent": "card_arrival"}',
                           "no 'intent'; rename the line's 'Intent' to 'intent'"),
                          ('{"问题": "我的卡在哪", "intent": "card_arrival"}', "no 'text'; rename the line's '问题' to 'text'"),
                          ('{"text": "我的卡在哪"， "intent": "card_arrival"}', "Expecting ',' delimiter at column 17: '，' is "
                           "typed full-width, as a Chinese input method types it; write ','")]:
        data.write_text("".join(json.dumps({"text": t, "intent": i}) + "\n" for t, i in ENGLISH) + line + "\n")
        result = CliRunner().invoke(cli, ["init", str(tmp_path / "bot"), "--from-jsonl", str(data)])
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert (f"{data}:{len(ENGLISH) + 1}: expected a JSON object with \"text\" and \"intent\": {problem}\n"
                in result.output)


@pytest.mark.skipif(not yaml.__with_libyaml__, reason="PyYAML without libyaml has its pure-Python writer alone")
def test_the_files_are_written_by_libyaml_as_pyyamls_writer_writes_them(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """PyYAML's pure-Python writer took most of a minute over 200,000 examples. libyaml's writes an emoji as
    "\\U0001F600", its intent's examples as one quoted line: such an intent is still written by PyYAML's."""
    pure = yaml.emitter.Emitter.emit
    events: list[yaml.Event] = []

    def counted(self: yaml.emitter.Emitter, event: yaml.Event) -> None:
        events.append(event)
        pure(self, event)

    monkeypatch.setattr(yaml.emitter.Emitter, "emit", counted)
    root, result = import_bot(tmp_path, ENGLISH + CHINESE)
    assert result.exit_code == 0 and not events, result.output
    (tmp_path / "emoji").mkdir()
    root, result = import_bot(tmp_path / "emoji", ENGLISH + [("thanks 😀", "thanks"), ("cheers", "thanks")])
    assert result.exit_code == 0 and events, result.output
    assert (root / "nlu.yml").read_text() == (
        "version: '3.1'\nnlu:\n- intent: card_arrival\n  examples: |\n    - where is my card?\n"
        "    - my card still hasn't come\n- intent: thanks\n  examples: |\n    - thanks 😀\n    - cheers\n"
        "- intent: top_up\n  examples: |\n    - how do I top up?\n    - add money to my account\n")


def test_a_csv_texts_several_intents_are_named_by_the_rows_lines(tmp_path: Path) -> None:
    """A helpdesk export (Excel's byte order mark, CRLF, an answer over two lines) that labels one question two ways:
    the rows are named by the lines they start on, for the wrong label to be found and corrected."""
    data = tmp_path / "tickets.csv"
    data.write_bytes("\ufeffquestion,intent,answer\r\nwhere is my card?,card_arrival,\"It ships\r\nin 3 days.\"\r\n"
                     "how do I top up?,top_up,\r\nWhere is my card?,top_up,\r\nadd money,top_up,\r\n".encode())

    result = CliRunner().invoke(cli, ["init", str(tmp_path / "bot"), "--from-csv", str(data)])

    assert result.exit_code == 0, result.output
    assert f"{data}:2: 'where is my card?' kept under 'card_arrival' (1 line), not 'top_up' on line 5\n" in result.output


def test_texts_are_imported_as_the_server_reads_a_message(tmp_path: Path) -> None:
    """A DEL, a NUL, a byte-order mark or a C1 control in one ticket put its intent's examples on one quoted
    line of nlu.yml; "退款\u200b" under one intent and "退款" under another, one message to the server, were
    two examples."""
    rows = ENGLISH + [("card not here\x7f", "card_arrival"), ("nul\x00 top up", "top_up"), ("\ufeffadd money now", "top_up"),
                      ("top up \x85 failed\x9b", "top_up"), ("退款\u200b", "get_refund"), ("退款", "cancel_order"),
                      ("退款", "cancel_order"), ("ｃａｎｃｅｌ　ｏｒｄｅｒ", "cancel_order")]
    root, result = import_bot(tmp_path, rows)
    assert result.exit_code == 0, result.output
    assert "1 text had more than one intent; it was kept under the one it was given most often" in result.output
    assert ":11: '退款\\u200b' kept under 'cancel_order' (2 lines), not 'get_refund' on line 11\n" in result.output
    nlu = (root / "nlu.yml").read_text()
    assert '"' not in nlu and nlu.count("examples: |") == 3  # each intent's examples one a line
    assert [(e.text, e.intent) for e in load_project(root).examples] == [
        ("退款", "cancel_order"), ("cancel order", "cancel_order"), ("where is my card?", "card_arrival"),
        ("my card still hasn't come", "card_arrival"), ("card not here", "card_arrival"), ("how do I top up?", "top_up"),
        ("add money to my account", "top_up"), ("nul top up", "top_up"), ("add money now", "top_up"),
        ("top up failed", "top_up")]


def test_the_agents_answers_go_to_history_under_their_questions_intents(tmp_path: Path) -> None:
    """A line's answer was dropped without a word, where deskbot answers from agents' answers."""
    data = tmp_path / "answered.jsonl"
    rows = [{"text": "where is my card?", "intent": "card_arrival", "answer": "Cards arrive within 5 working days."},
            {"text": "Where is my  card?", "intent": "card_arrival", "answer": "Cards arrive within 5 working days."},
            {"text": "where is my card?", "intent": "top_up", "answer": "It is on its way."},  # kept under card_arrival
            {"text": "my card still hasn't come", "intent": "card_arrival", "answer": None},
            {"text": "how do I top up?", "intent": "top_up ", "answer": "  "},  # exported unanswered
            {"text": "add money to my account", "intent": "top_up", "answer": "Tap Wallet, then Top up."},
            {"text": "what's the weather like", "intent": "oos", "answer": "I can only help with your account."},
            # another customer's name and address, and a phone number: never shown to the next customer
            {"text": "change my address", "intent": "top_up", "answer": "Hi John Smith, it now goes to 221B Baker Street."},
            {"text": "can you call me", "intent": "top_up", "answer": "Sure, we'll ring you on +44 20 7946 0958."},
            # part of the number the customer wrote, read against their message as the store keeps it (redacted)
            {"text": "call me on +8613812345678", "intent": "top_up", "answer": "The courier will ring 1234 5678."}]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    root = tmp_path / "bot"
    result = CliRunner().invoke(cli, ["init", str(root), "--from-jsonl", str(data)])
    assert result.exit_code == 0, result.output
    assert "history.jsonl holds 3 answers from the file, each with its text as the question and under its intent." \
           in result.output
    assert f"Next: bot train {root}\n" in result.output  # no placeholder left to write
    assert ("3 answers left out, as no other customer may read them: an email or phone number, one customer's case, "
            f"their name or address: {data}:8, {data}:9, {data}:10.") in result.output  # the lines to look at
    project = load_project(root)
    assert [(h.question, h.answer, h.intent) for h in project.history] == [
        ("where is my card?", "Cards arrive within 5 working days.", "card_arrival"),
        ("where is my card?", "It is on its way.", "card_arrival"),
        ("add money to my account", "Tap Wallet, then Top up.", "top_up")]
    assert project.unanswered() == []  # no intent left to the fallback alone
    # A placeholder template came first and told every customer an agent would follow up, answers or not.
    assert project.responses.templates == {}
    for answer, problem in [(5, "the answer must be text, not 5"),
                            ("Z" * 20_001, "the answer is 20001 characters long, more than a reply may be (20000)")]:
        data.write_text("".join(json.dumps(row) + "\n" for row in rows[:2])
                        + json.dumps({"text": "hi", "intent": "greet", "answer": answer}) + "\n")
        result = CliRunner().invoke(cli, ["init", str(tmp_path / "refused"), "--from-jsonl", str(data)])
        assert result.exit_code == 1 and f"{data}:3: {problem}\n" in result.output, result.output
        assert not (tmp_path / "refused").exists()
    # one of each said so: it was "the 1 intent", "1 answer … may read them", "1 answer …, each with its text"
    data.write_text("".join(json.dumps(row) + "\n" for row in [*rows[:2], {**rows[8], "intent": "card_arrival"},
                                                                 {"text": "hi", "intent": "greet"}]))
    result = CliRunner().invoke(cli, ["init", str(tmp_path / "one"), "--from-jsonl", str(data)])
    assert "Next: write the answer of the intent with a placeholder in responses.yml" in result.output, result.output
    assert "1 answer left out, as no other customer may read it: " in result.output
    assert "history.jsonl holds 1 answer from the file, with its text as the question and under its intent." \
        in result.output


def test_an_export_in_another_shape_is_named_and_keys_not_read_are_said(tmp_path: Path) -> None:
    """A CSV or a JSON array got JSON's own words ("Expecting value: line 1 column 1"), and agents' answers under
    another key than "answer" were lost without a word: every intent got a placeholder."""
    data = tmp_path / "tickets.csv"
    for content, hint in (("text,intent\nwhere is my card?,card_arrival\n", "the file looks like CSV: write one JSON "
                           'object per line, such as {"text": "where is my order?", "intent": "track_order"}, or read '
                           "it with --from-csv"),
                          ("\ufefftext;intent\n", "the file looks like CSV"),
                          ('[{"text": "where is my card?", "intent": "card_arrival"}]\n', "one JSON array")):
        data.write_text(content)
        result = CliRunner().invoke(cli, ["init", str(tmp_path / "csv-bot"), "--from-jsonl", str(data)])
        assert result.exit_code == 1 and hint in result.output, result.output
    rows = [{"text": t, "intent": i, "agent_answer": "It ships in 3 days."} for t, i in (ENGLISH[0], ENGLISH[3])]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = CliRunner().invoke(cli, ["init", str(tmp_path / "bot"), "--from-jsonl", str(data)])
    assert result.exit_code == 0, result.output
    assert "Not read: 'agent_answer' (2 lines); a line's agent answer goes under \"answer\"." in result.output
    data.write_text("".join(json.dumps({"text": t, "intent": i}) + "\n" for t, i in
                            [("refund please", "Refund"), ("money back", "refund"), ("where is it", "track")]))
    result = CliRunner().invoke(cli, ["init", str(tmp_path / "cased"), "--from-jsonl", str(data)])
    assert "Intents that differ only in case, each its own intent: Refund and refund" in result.output


def test_a_helpdesks_csv_export_makes_a_bot(tmp_path: Path) -> None:
    """A helpdesk exports its tickets as CSV, which bot init read only as JSON Lines: Excel's byte order mark and
    line ends, its columns in any case and order, a quoted answer over two lines, and a row without an intent,
    an answer to what no intent covers, which goes to history.jsonl alone."""
    data = tmp_path / "tickets.csv"
    data.write_text("\ufeffQuestion,Answer,Intent,Agent\r\n"
                    'where is my card?,"It ships in 3 days,\nby post.",card_arrival,ann\r\n'
                    "my card still hasn't come,,card_arrival,bob\r\n"
                    '"how do I top up, please?",,top_up,ann\r\n'
                    "\r\n"
                    'do you deliver abroad?,"Yes, to most countries.",,ann\r\n', encoding="utf-8", newline="")
    root = tmp_path / "bot"
    result = CliRunner().invoke(cli, ["init", str(root), "--from-csv", str(data)])
    assert result.exit_code == 0, result.output
    assert "2 intents and 3 examples" in result.output
    assert "history.jsonl holds 2 answers from the file, each with its text as the question and under its intent " \
           "(1 under none)." in result.output
    assert "Not read: 'agent' (4 rows); an agent's answer goes in the column named \"answer\"." in result.output
    project = load_project(root)
    assert sorted((e.intent, e.text) for e in project.examples) == [
        ("card_arrival", "my card still hasn't come"), ("card_arrival", "where is my card?"),
        ("top_up", "how do I top up, please?")]
    assert [(h.question, h.answer, h.intent) for h in project.history] == [
        ("where is my card?", "It ships in 3 days,\nby post.", "card_arrival"),
        ("do you deliver abroad?", "Yes, to most countries.", None)]
    assert project.unanswered() == []  # top_up has its placeholder
    refused = CliRunner().invoke(cli, ["init", str(tmp_path / "both"), "--from-csv", str(data), "--from-jsonl", str(data)])
    assert refused.exit_code == 2 and "--from-jsonl and --from-csv each give the bot's files: use one" in refused.output


def test_a_csv_export_with_its_columns_named_in_chinese_makes_a_bot(tmp_path: Path) -> None:
    """A Chinese helpdesk names its export's columns 问题, 意图 and 答案 (問題, 意圖 in Traditional): bot init
    refused it until they were renamed in English."""
    data = tmp_path / "tickets.csv"
    data.write_text("\ufeff問題,答案,意圖,客服\r\n我要退款,请在订单页申请退款。,get_refund,小王\r\n订单到哪了,,track_order,小李\r\n"
                    "可以开发票吗,可以，下单时填写抬头即可。,,小王\r\n", encoding="utf-8", newline="")
    result = CliRunner().invoke(cli, ["init", str(tmp_path / "bot"), "--from-csv", str(data)])
    assert result.exit_code == 0, result.output
    assert "Not read: '客服' (3 rows)" in result.output
    project = load_project(tmp_path / "bot")
    assert project.config.language == "zh"
    assert sorted((e.intent, e.text) for e in project.examples) == [("get_refund", "我要退款"), ("track_order", "订单到哪了")]
    assert [(h.question, h.answer, h.intent) for h in project.history] == [
        ("我要退款", "请在订单页申请退款。", "get_refund"), ("可以开发票吗", "可以，下单时填写抬头即可。", None)]


def test_a_csv_exports_html_character_references_are_read_as_their_characters(tmp_path: Path) -> None:
    """A helpdesk exports its tickets' HTML bodies, whose apostrophes and ampersands are character references: the
    bot answered customers "We&#39;ll check &amp; reply soon" as it was. Text that only looks like one, without its
    semicolon ("AT&T", "price&notice"), stays as written; so does a history.csv's."""
    root, result = import_csv(tmp_path, "question,intent,answer\r\n"
                                        "I can&#39;t log in,login,We&#39;ll check &amp; reply soon\r\n"
                                        "my AT&T phone&notice,login,\r\n"
                                        "&#x9000;&#27454;,get_refund,请在订单页申请&hellip;\r\n")
    assert result.exit_code == 0, result.output
    project = load_project(root)
    assert sorted(e.text for e in project.examples) == ["I can't log in", "my AT&T phone&notice", "退款"]
    assert [(h.question, h.answer) for h in project.history] == [
        ("I can't log in", "We'll check & reply soon"), ("退款", "请在订单页申请\u2026")]
    (root / "history.csv").write_text("question,answer\nwhere&#39;s my parcel?,It ships in 2 days &ndash; by DHL.\n")
    assert [(h.question, h.answer) for h in load_project(root).history][-1] == (
        "where's my parcel?", "It ships in 2 days \u2013 by DHL.")


def test_a_jsonl_exports_html_character_references_are_read_as_their_characters(tmp_path: Path) -> None:
    """A helpdesk's JSON export holds its tickets' HTML bodies as its CSV export does, but only the CSV's were read:
    bot init --from-jsonl taught "I can&#39;t log in" and indexed "We&#39;ll check &amp; reply soon" for customers.
    Text without a reference's semicolon ("AT&T") stays as written."""
    root, result = import_jsonl(tmp_path, [
        {"text": "I can&#39;t log in", "intent": "login", "answer": "We&#39;ll check &amp; reply soon"},
        {"text": "my AT&T phone&notice", "intent": "login"},
        {"text": "&#x9000;&#27454;", "intent": "get_refund", "answer": "请在订单页申请&hellip;"}])
    assert result.exit_code == 0, result.output
    project = load_project(root)
    assert sorted(e.text for e in project.examples) == ["I can't log in", "my AT&T phone&notice", "退款"]
    assert [(h.question, h.answer) for h in project.history] == [
        ("I can't log in", "We'll check & reply soon"), ("退款", "请在订单页申请\u2026")]


ANSWER_HTML = ('<h3>Your order</h3><p>Hi,</p>\n<p>It ships in <b>2\n  days</b>.<br>Track it '
               '<a href="https://shop.example/t?id=1&amp;o=2">here</a>:</p><ol><li><p>Open <em>Orders</em></p></li>'
               '<li>Tap it</li></ol>')
ANSWER_MARKDOWN = ("Your order\n\nHi,\n\nIt ships in **2 days**.\nTrack it [here](https://shop.example/t?id=1&o=2):"
                   "\n\n1. Open *Orders*\n2. Tap it")


def test_an_exports_html_tags_are_read_as_deskbots_markdown(tmp_path: Path) -> None:
    """A helpdesk exports its tickets' HTML bodies: their <p>, <br>, <b> and <a> went into history as they were, and
    the web chat, which shows a message's HTML as typed, and WeCom showed customers the tags. An answer's are read as
    the lines, lists, bold, italics and links of the Markdown the channels show; a question's as its text alone; a
    text's own "<" and "&lt;b&gt;" stay text. So are history.csv's and a JSON export's."""
    from bot.channels.wecom import plain_text

    quoted = ANSWER_HTML.replace('"', '""')
    root, result = import_csv(tmp_path, "question,intent,answer\r\n"
                                        f'<p>where is my <b>order</b>?</p>,track_order,"{quoted}"\r\n'
                                        "<div>我要退款</div>,get_refund,"
                                        "<ul><li>打开订单页</li><li>点击<strong>申请退款</strong></li></ul>\r\n"
                                        "is it < 5 kg?,track_order,Type &lt;b&gt; for bold.\r\n")
    assert result.exit_code == 0, result.output
    project = load_project(root)
    assert sorted(e.text for e in project.examples) == ["is it < 5 kg?", "where is my order?", "我要退款"]
    assert [(h.question, h.answer) for h in project.history] == [
        ("where is my order?", ANSWER_MARKDOWN), ("我要退款", "- 打开订单页\n- 点击**申请退款**"),
        ("is it < 5 kg?", "Type <b> for bold.")]
    assert plain_text(ANSWER_MARKDOWN) == ("Your order\n\nHi,\n\nIt ships in 2 days.\nTrack it here "
                                           "(https://shop.example/t?id=1&o=2):\n\n1. Open Orders\n2. Tap it")
    (root / "history.csv").write_text("问题,答案\n<p>发货了吗<img src=https://shop.example/e.png alt=表情></p>,"
                                      "<p>已发货，<b>三天</b>内送达。</p><p>谢谢！</p>\n", encoding="utf-8")
    assert [(h.question, h.answer) for h in load_project(root).history][-1] == (
        "发货了吗", "已发货，**三天**内送达。\n\n谢谢！")
    root, result = import_jsonl(tmp_path, [
        {"text": "<p>where is my <b>order</b>?</p>", "intent": "track_order", "answer": ANSWER_HTML},
        {"text": "我要退款", "intent": "get_refund"}])
    assert result.exit_code == 0, result.output
    assert [(h.question, h.answer) for h in load_project(root).history] == [("where is my order?", ANSWER_MARKDOWN)]
    (tmp_path / "empty").mkdir()  # a question of tags alone is refused, as an empty one is
    _, result = import_jsonl(tmp_path / "empty", [{"text": "<p> </p>", "intent": "track_order"}])
    assert result.exit_code == 1 and "tickets.jsonl:1: the text has nothing to read" in result.output, result.output


def test_a_less_than_sign_that_opens_no_html_tag_stays_text_beside_real_tags(tmp_path: Path) -> None:
    """A ticket body with real tags read a customer's "<order 123>" as a tag too, and dropped it: the answer asked the
    customer to "send your : we answer in 2 days". A "<" that opens no HTML tag is text, in English and Chinese, whatever the tags
    beside it; an Outlook "<o:p>" and a comment are still tags."""
    root, result = import_csv(tmp_path, "question,intent,answer\r\n"
                                        "<p>where is <order 123>?</p>,track_order,"
                                        "<p>Send your <order number>: we answer in <b>2 days</b>; a < b<o:p></o:p></p><!-- sig -->\r\n"
                                        "<div>我的<订单 88>运费多少</div>,shipping,<p>若重量 <5 kg，<b>免运费</b></p>\r\n")
    assert result.exit_code == 0, result.output
    project = load_project(root)
    assert sorted(e.text for e in project.examples) == ["where is <order 123>?", "我的<订单 88>运费多少"]
    assert [h.answer for h in project.history] == ["Send your <order number>: we answer in **2 days**; a < b",
                                                 "若重量 <5 kg，**免运费**"]


def test_an_exports_link_with_a_space_in_its_address_is_a_link_the_chat_draws(tmp_path: Path) -> None:
    """A helpdesk's link to "https://shop.example/help center/returns" became "[returns](https://shop.example/help
    center/returns)", which the web chat, Slack and WeCom show as typed, brackets and all: its address's spaces (and
    parentheses, which end a link too) are percent-encoded, as a browser sends them, and a title is left out. A link
    no customer can open from a chat (the helpdesk's own "/hc/articles/12", "javascript:") is its text alone."""
    from bot.channels.wecom import INLINE

    root, result = import_csv(tmp_path, "question,intent,answer\r\n"
                                        'how do I return it?,returns,"<p>Read <a href=""https://shop.example/help '
                                        'center/returns (EU)"" title=""Returns"">our returns page</a>.</p>"\r\n'
                                        'where is my order,track_order,"<p>See <a href=""/hc/articles/12"">the '
                                        'guide</a>, <a href=""javascript:void(0)"">this</a> or <a href=""https://shop.'
                                        'example/contact"">write</a>.</p>"\r\n')
    assert result.exit_code == 0, result.output
    answer, other = (h.answer for h in load_project(root).history)
    assert answer == "Read [our returns page](https://shop.example/help%20center/returns%20%28EU%29)."
    # the helpdesk's own page, and a script, are no address a customer can open: their text alone
    assert other == "See the guide, this or [write](https://shop.example/contact)."
    assert INLINE.search(answer)[2] == "https://shop.example/help%20center/returns%20%28EU%29"  # the chat's own rule


def test_an_exports_rules_and_tables_read_as_lines_the_chat_shows(tmp_path: Path) -> None:
    """A rule became "---" and a table Markdown's "| --- |" rows (or, alone in a cell, stayed HTML), which neither the
    web chat nor Slack nor WeCom draws: customers saw the marks. A rule is a blank line, and a table a line of each
    row's cells, its bold kept, its empty cells left out."""
    table = ("<p>运费如下：</p>\n<table>\n<thead><tr><th>地区</th><th>运费</th></tr></thead>\n<tbody>\n"
             "<tr>\n  <td>华东</td>\n  <td><b>免运费</b></td>\n</tr>\n<tr><td>新疆</td><td>20 元</td><td></td></tr>\n"
             "</tbody>\n</table><hr><p>谢谢</p>")
    root, result = import_csv(tmp_path, "question,intent,answer\r\n"
                                        f'运费多少,shipping,"{table}"\r\n'
                                        "sizes?,sizes,<table><tr><td>S</td><td>36</td></tr><tr><td>M</td><td>38</td>"
                                        "</tr></table>\r\n"
                                        "hi,greet,<p>Hello</p><hr><p>How can I help?</p>\r\n")
    assert result.exit_code == 0, result.output
    assert [h.answer for h in load_project(root).history] == [
        "运费如下：\n\n地区 | 运费\n华东 | **免运费**\n新疆 | 20 元\n\n谢谢", "S | 36\nM | 38", "Hello\n\nHow can I help?"]


def test_an_answer_laid_out_in_an_e_mail_templates_table_keeps_its_paragraphs(tmp_path: Path) -> None:
    """A helpdesk's e-mail template lays the whole answer out in a table of one cell a row: read as a table, its
    greeting, paragraphs, list and signature ran into one line. Such a table is its blocks; a table of data in it is
    still a line a row."""
    layout = ("<table><tr><td><p>Hi,</p><p>Your refund is on its way:</p><table><tr><td>Card</td><td>5 days</td></tr>"
              "</table><ul><li>no fee</li></ul></td></tr><tr><td><p>Best,<br>Anna</p></td></tr></table>")
    root, result = import_csv(tmp_path, f"question,intent,answer\r\nrefund?,get_refund,\"{layout}\"\r\n"
                                        "hi,greet,<table><tr><td>您好！</td></tr></table>\r\n")
    assert result.exit_code == 0, result.output
    assert [h.answer for h in load_project(root).history] == [
        "Hi,\n\nYour refund is on its way:\n\nCard | 5 days\n\n- no fee\n\nBest,\nAnna", "您好！"]


def test_an_exports_pictures_and_preformatted_text_read_as_the_chat_shows_them(tmp_path: Path) -> None:
    """A picture became "![alt](…)" (or "![](…)" without an alt text), whose marks the web chat, Slack and WeCom
    show, and an e-mail's inline "cid:" picture or a pasted "data:" one an address no customer can open, thousands of
    characters long; a <pre> became a "```" block, which no channel draws. A picture is a link named by its alt text,
    or its bare address; one no customer can open its alt text alone; preformatted text its lines."""
    from bot.channels.wecom import plain_text

    root, result = import_csv(tmp_path, "question,intent,answer\r\n"
                                        'refund?,get_refund,"<p>Tap <img src=""https://shop.example/refund btn.png"" '
                                        'alt=""Refund""> then wait.</p><img src=""https://shop.example/logo.png"">"\r\n'
                                        'invoice?,invoice,"<p>See <img src=""data:image/png;base64,iVBORw0KGgo="" '
                                        'alt=""the screenshot""><img src=""cid:image001.png@01D""></p>'
                                        '<pre>\n  Mon-Fri\n  9:00-18:00\n</pre>"\r\n')
    assert result.exit_code == 0, result.output
    answers = [h.answer for h in load_project(root).history]
    assert answers == ["Tap [Refund](https://shop.example/refund%20btn.png) then wait.\n\nhttps://shop.example/logo.png",
                       "See the screenshot\n\nMon-Fri\n9:00-18:00"]
    assert plain_text(answers[0]) == ("Tap Refund (https://shop.example/refund%20btn.png) then wait.\n\n"
                                      "https://shop.example/logo.png")


def test_an_exports_quotes_and_struck_out_text_read_as_the_chat_shows_them(tmp_path: Path) -> None:
    """A quoted passage became Markdown's "> " lines and struck-out text "~~…~~", neither of which any channel draws:
    the customer read the marks, or, as plain text, "$50 $40", the old price first. A quote is its paragraphs, and
    struck-out text is left out."""
    root, result = import_csv(tmp_path, "question,intent,answer\r\n"
                                        "returns?,returns,<p>Our policy:</p><blockquote><p>Returns within 30 days.</p>"
                                        "<p>Unworn items only.</p></blockquote>\r\n"
                                        "price?,price,<p>Now <s>$50</s>$40 until <del>May 1</del><strike>!</strike>"
                                        "June 1.</p>\r\n")
    assert result.exit_code == 0, result.output
    assert [h.answer for h in load_project(root).history] == [
        "Our policy:\n\nReturns within 30 days.\n\nUnworn items only.", "Now $40 until June 1."]


def test_an_exports_word_markup_is_left_out_and_a_stray_markup_opener_stays_text(tmp_path: Path) -> None:
    """A ticket body pasted from Word holds "<?xml:namespace …>" and "<![if !supportLists]>", whose words markdownify
    wrote into the answer; and a cell with "<![" that opens no such markup (a regex, a customer's typing) stopped
    bot init with a parser's traceback. Word's markup is left out; the rest is text."""
    root, result = import_csv(tmp_path, "question,intent,answer\r\n"
                                        'steps?,steps,"<?xml version=""1.0""?><p class=MsoNormal><?xml:namespace prefix '
                                        '= o /><![if !supportLists]>1.<![endif]> Open <b>Orders</b><o:p></o:p></p>"\r\n'
                                        "<p>what is <![确]?</p>,other,<p>It is <![CDATA[a mark]]>.</p>\r\n")
    assert result.exit_code == 0, result.output
    project = load_project(root)
    assert sorted(e.text for e in project.examples) == ["steps?", "what is <![确]?"]
    assert [h.answer for h in project.history] == ["1. Open **Orders**", "It is a mark."]


def test_history_jsonl_and_bot_evals_jsonl_test_file_read_html_as_a_csv_export_is(tmp_path: Path) -> None:
    """A shop that saved its helpdesk's JSON export as history.jsonl, or as bot eval's test file, got its HTML as
    written, where the same tickets as history.csv or a CSV test file were read: customers were answered "<p>It
    ships in <b>2 days</b>.</p>", and a test question of tags alone was scored (by bot bench nlu too). Each reads it as the CSV does; and
    history.jsonl's "&lt;b&gt;", which bot init writes for an export's escaped "<b>", stays text."""
    root = tmp_path / "bot"
    assert CliRunner().invoke(cli, ["init", str(root)]).exit_code == 0
    lines = [{"question": "<p>where&#39;s my <b>parcel</b>?</p>", "answer": "<p>It ships in <b>2 days</b>.</p><hr>"
                                                                             "<p>Track it <a href='https://shop.example"
                                                                             "/my orders'>here</a>.</p>"},
             {"question": "<div>发票</div>", "answer": "<ul><li>打开订单页</li><li>点击<strong>开发票</strong></li></ul>"},
             {"question": "bold?", "answer": "Type &lt;b&gt; for bold, &amp;amp; for &amp;."}]
    (root / "history.jsonl").write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines),
                                        encoding="utf-8")
    assert [(h.question, h.answer) for h in load_project(root).history] == [
        ("where's my parcel?", "It ships in **2 days**.\n\nTrack it [here](https://shop.example/my%20orders)."),
        ("发票", "- 打开订单页\n- 点击**开发票**"), ("bold?", "Type <b> for bold, &amp; for &.")]
    test = tmp_path / "test.jsonl"
    test.write_text('{"text": "where is my order", "intent": "track_order"}\n{"text": "<p><br></p>", "intent": "greet"}\n')
    for command in (["eval", str(root)], ["bench", "nlu", str(root)]):  # bot bench nlu reads the same test file
        result = CliRunner().invoke(cli, [*command, "--test", str(test)])
        assert result.exit_code == 1 and f"{test}:2: the text has nothing to read" in result.output, result.output


# A helpdesk's ticket export as a shop downloads it, its bodies in HTML: the English questions and answers are
# adapted from the Bitext customer-support set (bitext/customer-support-llm-chatbot-training-dataset, CDLA-Sharing-1.0).
HELPDESK_EXPORT = """Ticket ID,Question,Intent,Answer,Agent,Status\r
1001,"<p>how can I cancel purchase 113542617735902?</p>",cancel_order,"<p>Hi,</p><p>To cancel an order:</p><ol><li>Log in \
to <a href=""https://shop.example/my account"">your account</a></li><li>Open <b>Order Details</b></li></ol><hr>\
<p>Best,<br>Anna</p>",Anna,solved\r
1002,<p>I want to cancel my order</p>,cancel_order,,Ben,open\r
1003,<div>where is my package?</div>,track_order,"<p>Track it under <a href=""https://shop.example/orders"">My Orders</a>.\
</p>",Anna,solved\r
1004,<div>Where is my  package?</div>,track_order,<p>It ships within 2 days.</p>,Ben,solved\r
1005,<p>我要退款</p>,get_refund,"<p>请在<b>订单</b>页申请退款：</p><table><tr><th>方式</th><th>到账</th></tr><tr><td>原路退回</td>\
<td>5–7 天</td></tr></table>",Li,solved\r
1006,<p>refund please</p>,get_refund,<p><br></p>,Li,solved\r
1007,<p>what payment methods do you accept</p>,check_payment_methods,<p>Visa &amp; PayPal.</p>,Ben,solved\r
"""


def test_a_helpdesks_export_makes_a_bot_that_answers_as_its_agents_did_and_names_what_to_mend(tmp_path: Path) -> None:
    """A support lead's first import, a helpdesk's CSV export of HTML bodies: the bot answers with its agents' words
    as the channels show them, a ticket answered with an empty body is a question alone, and what the lead must
    decide is named with its lines: a question two agents answered otherwise was kept twice without a word, and a
    customer asking it got either answer."""
    root, result = import_csv(tmp_path, HELPDESK_EXPORT)
    assert result.exit_code == 0, result.output
    data = tmp_path / "tickets.csv"
    assert (f"1 question with more than one answer (spacing and case aside), each kept in history.jsonl: 'where is my "
            f"package?' ({data}:4, {data}:5); a customer who asks one gets either: keep the one customers should get, "
            "and delete the others.") in result.output
    assert "Not read: 'ticket id' (7 rows), 'agent' (7 rows), 'status' (7 rows)" in result.output
    project = load_project(root)
    assert sorted((e.intent, e.text) for e in project.examples) == [
        ("cancel_order", "I want to cancel my order"), ("cancel_order", "how can I cancel purchase 113542617735902?"),
        ("check_payment_methods", "what payment methods do you accept"), ("get_refund", "refund please"),
        ("get_refund", "我要退款"), ("track_order", "where is my package?")]
    assert [h.answer for h in project.history] == [
        "Hi,\n\nTo cancel an order:\n\n1. Log in to [your account](https://shop.example/my%20account)\n2. Open "
        "**Order Details**\n\nBest,\nAnna", "Track it under [My Orders](https://shop.example/orders).",
        "It ships within 2 days.", "请在**订单**页申请退款：\n\n方式 | 到账\n原路退回 | 5–7 天", "Visa & PayPal."]
    checked = CliRunner().invoke(cli, ["check", str(root)])
    assert checked.exit_code == 0, checked.output
    assert ("note: 1 history question with more than one answer (spacing and case aside), each kept: 'where is my "
            "package?' (history.jsonl:2, history.jsonl:3); a customer who asks one gets either") in checked.output


def test_a_csv_export_with_a_cell_longer_than_csvs_limit_is_read(tmp_path: Path) -> None:
    """A helpdesk exports each ticket's whole transcript beside its question: Python's csv stops at a cell of more
    than 131,072 characters, and bot init refused the export there, saying a quote was left open. The transcript
    column is read past and named as not read; history.csv's too."""
    transcript = "hello, I wrote before about this. " * 5000
    root, result = import_csv(tmp_path, "question,intent,answer,transcript\r\nwhere is my card?,card_arrival,It ships "
                                        f'in 3 days.,"{transcript}"\r\nhow do I top up?,top_up,,\r\n')
    assert result.exit_code == 0, result.output
    assert "Not read: 'transcript' (1 row)" in result.output
    (root / "history.csv").write_text(f'question,answer,transcript\nhas it shipped?,It ships in 3 days.,"{transcript}"\n',
                                      encoding="utf-8")
    assert ("has it shipped?", "It ships in 3 days.") in [(h.question, h.answer) for h in load_project(root).history]


def test_bot_train_help_says_which_files_it_learns_and_what_they_hold() -> None:
    """A shop with its own history read `bot train --help` for where its agents' answers go, and was told only that
    it fine-tunes and indexes: the files and their columns are named."""
    said = " ".join(CliRunner().invoke(cli, ["train", "--help"], terminal_width=200).output.split())
    assert "nlu.yml's examples" in said and 'history.jsonl ({"question", "answer", "intent"?} lines)' in said
    assert "history.csv (a helpdesk's export: question, answer and, optionally, intent columns)" in said


def test_empty_columns_a_spreadsheet_exports_are_not_said_to_be_unread(tmp_path: Path) -> None:
    """Excel exports the empty, unnamed columns beside a table: "Not read: '' (3 rows)" named cells with nothing
    in them, and a column with no name as ''."""
    data = tmp_path / "tickets.csv"
    data.write_text("question,intent,answer,,Notes,\r\n"
                    "where is my card?,card_arrival,,,,\r\n"
                    "how do I top up?,top_up,, ,,\r\n"
                    "add money,top_up,,,,call back\r\n", encoding="utf-8", newline="")
    result = CliRunner().invoke(cli, ["init", str(tmp_path / "bot"), "--from-csv", str(data)])
    assert result.exit_code == 0, result.output
    assert "Not read: a column with no name (1 row); an agent's answer" in result.output, result.output
    data.write_text("question,intent,,Notes\r\nwhere is my card?,card_arrival,,\r\nhow do I top up?,top_up,,\r\n")
    result = CliRunner().invoke(cli, ["init", str(tmp_path / "bot"), "--from-csv", str(data), "--force"])
    assert result.exit_code == 0 and "Not read" not in result.output, result.output


@pytest.mark.parametrize("encoding", ["gbk", "big5"])
def test_a_chinese_csv_excel_saved_in_gbk_or_big5_is_said_to_be(tmp_path: Path, encoding: str) -> None:
    """Excel's "CSV (逗号分隔)" on Chinese Windows is GBK (Big5 on Hong Kong's and Taiwan's): the shop was told only
    that its export was not UTF-8, and not why its Chinese was not read."""
    data = tmp_path / "tickets.csv"
    data.write_bytes("问题,意图\n你好,greet\n".encode("utf-8") + "我要退款,refund\n".encode(encoding))
    result = CliRunner().invoke(cli, ["init", str(tmp_path / "bot"), "--from-csv", str(data)])
    assert result.exit_code == 1 and (f"{data}:3: not UTF-8 text (it reads as Chinese in GBK or Big5, as Chinese Windows "
                                      "saves text by default); save the file as UTF-8 (Excel: CSV UTF-8)") in result.output


def test_answered_tickets_without_intents_are_told_to_be_the_bots_history(tmp_path: Path) -> None:
    """A helpdesk's export is often its answered tickets alone, no one having labelled them: bot init --from-csv said
    only that the first row names an intent column, or that two intents are needed, and not that such a file is what
    the bot answers from as history.csv, which the advice makes it."""
    data = tmp_path / "tickets.csv"
    advice = ("questions with their answers and no intents are a bot's history: make the bot (bot init DIR, or from a "
              "file with intents) and save this file as DIR/history.csv")
    for header, row in [("question,answer", "where is my order,It ships today."),
                        ("question,intent,answer", "where is my order,,It ships today.")]:
        data.write_text(f"{header}\r\n{row}\r\n", encoding="utf-8", newline="")
        result = CliRunner().invoke(cli, ["init", str(tmp_path / "bot"), "--from-csv", str(data)])
        assert result.exit_code == 1 and advice in result.output, result.output
        root = tmp_path / "starter"
        assert CliRunner().invoke(cli, ["init", str(root), "--force"]).exit_code == 0
        shutil.copy(data, root / "history.csv")
        assert ("where is my order", "It ships today.") in [(h.question, h.answer) for h in load_project(root).history]
    data.write_text("question,intent\r\nwhere is my order,track_order\r\nparcel,track_order\r\n")
    result = CliRunner().invoke(cli, ["init", str(tmp_path / "bot"), "--from-csv", str(data)])
    assert result.exit_code == 1 and "at least two intents with examples are needed\n" in result.output, result.output


@pytest.mark.parametrize(("encoding", "said"), [
    ("gbk", "not UTF-8 text (it reads as Chinese in GBK or Big5, as Chinese Windows saves text by default)"),
    ("utf-16", 'not UTF-8 text (it is UTF-16, which Windows Notepad saves as "Unicode")')])
def test_a_jsonl_file_in_another_encoding_is_said_to_be(tmp_path: Path, encoding: str, said: str) -> None:
    """A Chinese file saved by a Chinese Windows editor is GBK, and one that Windows PowerShell 5 wrote with ">" is
    UTF-16: bot init --from-jsonl (and bot eval, of a test file) said "not UTF-8 text" alone, where its CSV reader
    said what the file is."""
    data = tmp_path / "labelled.jsonl"
    data.write_bytes('{"text": "我要退款", "intent": "refund"}\n{"text": "你好", "intent": "greet"}\n'.encode(encoding))
    result = CliRunner().invoke(cli, ["init", str(tmp_path / "bot"), "--from-jsonl", str(data)])
    assert result.exit_code == 1 and f"{data}:1: {said}; save the file as UTF-8" in result.output, result.output


@pytest.mark.parametrize(("content", "problem"), [
    ("question;intent\nhi;greet\n", "1: the first row names the columns: question (or text), intent and, optionally, "
                                    "answer (or in Chinese: 问题, 意图, 答案); it has 'question;intent'; the columns are "
                                    "separated by commas"),
    ("question,answer\nhi,Hello!\n", "1: the first row names the columns"),
    # a row's cells are read by name: the second answer column was read and the first dropped unsaid
    ("Question,Answer,Intent,answer\nhi,Hello!,greet,\n", "1: two columns are named 'answer'; keep one, or rename "
                                                          "the other"),
    ("question,intent,text\nhi,greet,hello\n", "1: two columns name the question: 'question' and 'text'"),
    ("问题,intent,意图\nhi,greet,hello\n", "1: two columns name the intent: 'intent' and '意图'"),
    ("question,intent\nhi,greet\n\"bye,bye\n", "3: unexpected end of data (a quote left open"),
    # each cell named: the one cut short at its comma is the text to quote
    ("question,intent\nhi,greet\nwhere is it, please?,track\n", "3: 3 columns where the first row names 2 (read as "
                                                                "question 'where is it', intent ' please?', and "
                                                                "'track' past them); quote a text that holds a comma"),
    ("question,intent\nhi,greet\nbye,\n", "3: a row without an intent needs an answer"),
    ("question,intent\nhi,greet\n ,bye\n", "3: the question is empty"),
    ("question,intent\nhi,greet\ncaf\xe9,bye\n", "3: not UTF-8 text; save the file as UTF-8 (Excel: CSV UTF-8)"),
])
def test_a_csv_row_bot_init_cannot_read_is_refused_with_its_line(tmp_path: Path, content: str, problem: str) -> None:
    data = tmp_path / "tickets.csv"
    data.write_bytes(content.encode("latin-1" if "\xe9" in content else "utf-8"))
    result = CliRunner().invoke(cli, ["init", str(tmp_path / "bot"), "--from-csv", str(data)])
    assert result.exit_code == 1 and f"{data}:{problem}" in result.output, result.output
    assert not (tmp_path / "bot").exists()
