"""Reading a labelled JSONL file (``{"text", "intent"}`` lines): the frozen evaluation set, a test file, an import.
Apart from the scoring in :mod:`finetune.evaluation`, whose libraries take seconds to import, as `bot check` reads
the frozen set and `bot init --from-jsonl` a file with no scoring at all."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot.channels.base import load_json, readable
from bot.project import CSV_COLUMNS, exported_line, in_file_order, json_error, jsonl_hint, not_utf8

LABELLED_LINE = '{"text": "where is my order?", "intent": "track_order"}'  # one line of a labelled file


def read_jsonl(path: Path, fail: Callable[[str], None], intent_name: Callable[[str], str] = str,
               check: Callable[[dict[str, Any]], object] | None = None, as_csv: str = "",
               lines: list[int] | None = None, exported: bool = False) -> list[dict[str, Any]]:
    """``{"text", "intent"}`` lines, other keys (such as ``oos_type``) kept; a bad line stops with its number.
    ``intent_name`` makes each line's intent; a ``ValueError`` it raises stops with the line's number too. So
    does a ``ValueError`` or ``TypeError`` of ``check``, which is given each line as it is returned. ``as_csv``:
    how the command reads a CSV file, said of a file that looks like one. ``lines``, given, gets each row's line.
    ``exported``: the file is a helpdesk's export (``bot init --from-jsonl``, ``bot eval``'s test file), whose text,
    intent and answer are HTML bodies, read as a CSV export's cells are (:func:`~bot.project.exported_line`), before
    ``check`` judges them; not the frozen evaluation set, which deskbot wrote from nlu.yml.
    The lines ``intent_name`` or ``check`` refuses are told together, once every line is read: an export's tickets
    whose questions are whole threads were told one a run."""
    rows, mistakes = [], []
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        at = data[:exc.start].count(b"\n") + 1
        fail(f"{path}:{at}: {not_utf8(data, exc.start)}; save the file as UTF-8")  # GBK, UTF-16 said so
    for n, line in enumerate(text.split("\n"), start=1):  # not splitlines: U+2028 may sit inside a JSON string
        if not line.strip():
            continue
        try:
            row = load_json(line.removeprefix("\ufeff"))  # a file of several joined, each with its mark
        except ValueError as exc:
            fail(f"{path}:{n}: expected a JSON object with \"text\" and \"intent\": {json_error(exc)}"
                 f"{jsonl_hint(line, n, LABELLED_LINE, as_csv)}")
        if not isinstance(row, dict):  # Python's words for indexing it ("string indices must be integers") told nothing
            fail(f"{path}:{n}: expected a JSON object with \"text\" and \"intent\": a line is one JSON object, "
                 f"not {type(row).__name__}{jsonl_hint(line, n, LABELLED_LINE, as_csv)}")
        if missing := next((key for key in ("text", "intent") if key not in row), None):
            # a helpdesk's JSON export names them as its CSV export does: "question", "问题", "Intent"
            named = next((key for key in row if CSV_COLUMNS.get(str(key).strip().casefold()) == missing), None)
            fail(f"{path}:{n}: expected a JSON object with \"text\" and \"intent\": no {missing!r}"
                 + (f"; rename the line's {named!r} to {missing!r}" if named is not None else ""))
        if exported:  # read before it is judged: "<p></p>" is no text
            row = exported_line(row)
        text, intent = row["text"], row["intent"]
        if intent is None or (isinstance(intent, str) and not intent.strip()):
            fail(f"{path}:{n}: the intent is empty")
        if text is None:  # not "None", which str() would make of it
            fail(f"{path}:{n}: the text is empty")
        if wrong := next((key for key, value in (("text", text), ("intent", intent))
                          if isinstance(value, (list, dict, bool))), None):  # str() would make one of ['a', 'b']
            fail(f"{path}:{n}: the {wrong} must be text, not {row[wrong]!r}")
        if not isinstance(row.get("oos_type", ""), str | None):  # kinds are sorted and counted as text
            fail(f"{path}:{n}: the oos_type must be text, not {row['oos_type']!r}")
        if not readable(str(text)):  # JSON may escape half a surrogate pair, which no tokenizer takes
            fail(f"{path}:{n}: the text has nothing to read, or is not valid Unicode")
        try:
            labelled = {**row, "text": str(text), "intent": intent_name(str(intent))}
            if check is not None:
                check(labelled)
        except (ValueError, TypeError) as exc:  # told with the others once every line is read
            mistakes.append(f"{path}:{n}: {exc}")
            continue
        rows.append(labelled)
        if lines is not None:
            lines.append(n)
    if mistakes:
        fail("\n".join(in_file_order(mistakes)))
    if not rows:
        fail(f"{path}: no examples")
    return rows
