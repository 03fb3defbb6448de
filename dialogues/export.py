"""What the bot learns from its conversations, as data: reviewed examples and agent answers.

``bot retrain`` and ``bot export`` read the store through :func:`learned_data` and keep what
:func:`learnable` keeps, so the exported file is exactly what a retrain would learn from. Unless ``privacy.redact`` is switched off, personal data
is redacted on the way out, even text stored before redaction was switched on: a model should not
learn one customer's email address, and an agent answer shown to another customer must not carry
it. Switched off, the text leaves as it is stored. The unredacted ``raw_text`` that
``privacy.keep_raw`` keeps never leaves the store.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

import regex

from dialogues.redact import (ACCOUNT, DATE_OR_TIME, PERSON_FIELDS, PLACEHOLDERS, SURNAME_LIKE_WORDS, SURNAMES, account_id, given_names, merged_spans, nfkc_view,
                              redact, redact_names, replace_found, was_redacted)
from dialogues.holding import SENT_TEXTS
from dialogues.store import Store
from retrieval.text import PRICE, WEB_ADDRESS, same_example, same_text


@dataclass
class LearnedData:
    examples: list[dict[str, Any]]  # {"text", "intent", "turn_id", "label_id", "created"}; intent may be "oos"
    answers: list[dict[str, Any]]  # {"question", "answer", "intent", "id", "created"}; intent may be None


def learned_text(text: str) -> str:
    """A customer's message as a model learns it when redacting: its personal data replaced (:func:`redact`), and
    the name they gave as their own ("my name is [NAME]") and where they live, the whole address line ("change it to
    [ADDRESS]", :func:`address_lines`) too: the store keeps both for the agents, but a model, its n-grams and an
    export need neither."""
    return replace_found(redact_names(redact(text)), address_lines, "[ADDRESS]")


def _learned(redacted: bool) -> Callable[[str], str]:
    """What a model learns of a customer's message, and the export writes: :func:`learned_text`, or the text as
    stored when not redacting."""
    return learned_text if redacted else (lambda text: text)


def learned_data(store: Store, since: float = 0.0, redacted: bool = True) -> LearnedData:
    """Review labels (the latest per turn) and agent answers created at or after ``since``; their text
    redacted unless ``redacted`` is False (``privacy.redact: false``)."""
    return learned_from(store.labels(since), store.answer_candidates(since), redacted)


def learned_from(labels: list[dict[str, Any]], answers: list[dict[str, Any]], redacted: bool = True) -> LearnedData:
    """:func:`learned_data` of the store's rows, read already: a server reads them on the store's thread and
    redacts them on another, so that every customer's reply does not wait for an export's redaction."""
    learned = _learned(redacted)
    # "asked" and "checked" are read by learnable()'s checks and written nowhere: "asked" keeps the names the customer
    # gave, which an answer must not repeat; "checked" is the answer redacted, also with privacy.redact off, since a
    # shop that keeps its customers' messages as written does not mean to show one customer's email to the next.
    return LearnedData(
        [{"text": learned(r["text"]), "intent": r["intent"], "turn_id": r["turn_id"], "label_id": r["id"],
          "created": r["created"]} for r in labels],
        [{"question": learned(r["question"]), "answer": checked if redacted else r["answer"], "checked": checked,
          "intent": r["intent"], "id": r["id"], "created": r["created"], "asked": redact(r["asked"] or "")}
         for r in answers for checked in [redact(r["answer"])]])


def one_per_message(examples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Of labelled turns, oldest label first as the store gives them, one per message (a
    :func:`~retrieval.text.same_text` key): the one labelled last, in the order of their labels.

    One click labels every turn of a queue item, and 400 customers asking "where is my parcel" became 400
    copies of one example, which outweighed nlu.yml's examples of every other intent. The latest label is
    what the reviewer means now (a label given since to a turn of the message, a correction)."""
    seen: set[str] = set()
    kept = []
    for row in reversed(examples):
        if (key := same_text(row["text"])) not in seen:
            seen.add(key)
            kept.append(row)
    return kept[::-1]


def contradicts(row: dict[str, Any], seed: Mapping[str, str]) -> bool:
    """Whether a label gives its message another intent than nlu.yml gives that text (``seed``: nlu.yml's
    examples as :func:`~retrieval.text.same_example` keys, with their intents). nlu.yml is the reference the
    shop edits: trained on both, the model is taught two answers to one message, and the label, learnt
    later, silently wins over the example the shop wrote."""
    return seed.get(same_example(row["text"]), row["intent"]) != row["intent"]


def learnable(data: LearnedData, intents: set[str], held_texts: set[str], seed: Mapping[str, str]) -> LearnedData:
    """What ``bot retrain`` learns of ``data``, and so what ``bot export`` writes: one example per message
    (:func:`one_per_message`) labelled with one of the bot's intents (``oos`` only when nlu.yml has such an
    intent), never a text of the frozen evaluation set (``held_texts``, as :func:`~retrieval.text.same_text`
    keys: in another case, punctuation or number it is the same message to a reviewer) nor one nlu.yml
    files under another intent (:func:`contradicts`), and the agent answers redaction leaves whole, with
    ``privacy.redact`` off too (their ``checked``), since another customer would read "write to [EMAIL]", or with it
    off the address itself (which may well be the shop's own, and belongs in a template), and that are neither one customer's case (:func:`about_one_case`) nor name them or where
    they live (:func:`about_one_person`)."""
    return LearnedData([r for r in _labelled(data, intents, held_texts) if not contradicts(r, seed)],
                       [r for r in data.answers
                        if shareable(r.get("asked") or r["question"], r.get("checked", r["answer"]))])


def contradicting(data: LearnedData, intents: set[str], held_texts: set[str],
                  seed: Mapping[str, str]) -> list[dict[str, str]]:
    """The labels :func:`learnable` leaves out for giving an nlu.yml example another intent, each with the
    intent nlu.yml gives it: someone has to correct the one that is wrong."""
    return [{"text": r["text"], "label": r["intent"], "nlu_intent": seed[same_example(r["text"])]}
            for r in _labelled(data, intents, held_texts) if contradicts(r, seed)]


def _labelled(data: LearnedData, intents: set[str], held_texts: set[str]) -> list[dict[str, Any]]:
    """One example per message labelled with one of the bot's ``intents``, none a frozen evaluation text."""
    return [r for r in one_per_message(data.examples)
            if r["intent"] in intents and same_text(r["text"]) not in held_texts]


def shareable(asked: str, answer: str) -> bool:
    """Whether an agent's ``answer`` (redacted) to ``asked`` may be shown to other customers: redaction took
    nothing from it, and it is neither one customer's case (:func:`about_one_case`), nor links to their page
    (:func:`_opens_one_customers_page`), nor names them or where they live (:func:`about_one_person`)."""
    return (not was_redacted(answer) and not about_one_case(asked, answer) and not _opens_one_customers_page(answer)
            and not about_one_person(asked, answer))


# A number of five or more digits (55667, 55667A), or of three or four that is no quantity with a unit
# (256GB, 100%); and a run of digit groups ("556 677", "556-677", "2026-12-03"); links (read as the web chat links
# them: a help page's path in Chinese is the link's) aside, any white space one space.
_NUMBER = re.compile(r"(?<![0-9])(?:[0-9]{5,}(?![0-9])|[0-9]{3,4}(?![0-9A-Za-z%]))")
_GROUPS = re.compile(r"(?<![0-9])[0-9]+(?:[ .-][0-9]+)+")
# What redaction leaves of a number the customer wrote ([PHONE], [CARD], [ID], [IBAN], [QQ], [IP]), which an answer may
# still repeat: "the courier has 7946 0958", "尾号5678的手机". An email address has no digits to repeat.
_REDACTED_NUMBERS = PLACEHOLDERS - {"[EMAIL]"}
_RUN = re.compile(r"(?<![0-9])[0-9]+(?:[ .-][0-9]+)*")
# The end of a phone or card number, named as such: 尾号5678, 后四位 1111, "ending in 0958", "last four digits: 1111";
# and as Hong Kong writes it, 尾數 1234, 最後四位係1234.
_ENDING = re.compile(r"(?i)(?:尾号|尾號|尾数|尾數|末尾|末四位|(?:最)?[后後]四位|(?<![a-z])(?:ending|ends) (?:in|with)"
                     r"|(?<![a-z])last (?:four|4|three|3)(?: digits)?(?: (?:are|is|of))?)"
                     r"\W{0,3}(?:是|为|為|係)?\W{0,3}[0-9]{3,4}(?![0-9])")


def _numbers(text: str) -> tuple[set[str], list[list[str]], set[str]]:
    """The numbers of ``text`` outside its links, its runs of digit groups, and the numbers of three or
    more digits in its links (a tracking page's ``?order=55667``)."""
    shown = nfkc_view(text)[0]  # digits as redaction reads them
    linked = {number for link in WEB_ADDRESS.findall(shown) for number in re.findall(r"[0-9]{3,}", link)}
    shown = re.sub(r"\s+", " ", PRICE.sub(" ", WEB_ADDRESS.sub(" ", shown)))
    return set(_NUMBER.findall(shown)), [re.split(r"[ .-]", m.group(0)) for m in _GROUPS.finditer(shown)], linked


# In a link, what opens one customer's page (a parcel's tracking, an order's, a payment's, a password reset): a UUID, or
# a run of letters and digits together (a token or a hash: aZ8kQ2mP9xL4, 8f14e45fceea167a), of 8 or more in its query
# or fragment and 16 or more in its path, or six digits or more in its query or fragment (?id=9400111899223344556677).
# A help page's numbers are in its path (/articles/360012345678-Returns), and a help video's id (?v=dQw4w9WgXcQ) is
# lost with the customer's: these checks lean to leaving an answer out.
_UUID = re.compile(r"(?i)[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_ALPHANUMERIC = re.compile(r"[A-Za-z0-9]+")


def _token_in(part: str, length: int) -> bool:
    """Whether ``part`` of a link holds a run of ``length`` or more letters and digits that mixes both."""
    return any(len(run) >= length and not run.isdigit() and not run.isalpha() for run in _ALPHANUMERIC.findall(part))


def _opens_one_customers_page(answer: str) -> bool:
    """Whether a link in ``answer`` carries what opens one customer's page (see :data:`_UUID`): given to another
    customer, it would show them the parcel, the order or the invoice, or let them set the password."""
    for link in WEB_ADDRESS.findall(nfkc_view(answer)[0]):
        query = re.search(r"[?#]", link)
        path, rest = (link[:query.start()], link[query.start():]) if query else (link, "")
        if _UUID.search(link) or _token_in(path, 16) or _token_in(rest, 8) or re.search(r"[0-9]{6}", rest):
            return True
    return False


def about_one_case(asked: str, answer: str) -> bool:
    """Whether an agent's answer is about its customer's own case: it repeats a number of three or more
    digits that the customer wrote (``asked``: "where is my order?", "55667" / "Order 55667 left our
    warehouse today"), in groups or not ("Order 556-677") or in a link ("…/track?order=55667"), or holds
    a number of six or more digits, or one of three or more groups, each but the last of three or more
    digits (the last of two or more), making eleven or more (a tracking number, "1234 5678 9012", "9400 1000 0000 0000 0000 00"),
    or names the end of a phone or card number ("尾号5678", "ending in 1111").
    Shown to the next customer, it would give them another customer's order number, and a status that
    is not theirs. Dates ("2026-12-03"), ranges ("100-200"), prices ("1.299.000", "$1499", "1499元") and
    the numbers of a link alone (a help page's) are no one's.

    ``asked`` is stored redacted, so a phone or card number the customer wrote is a placeholder there, and
    the agent repeating part of it ("the courier has 7946 0958") repeats nothing of ``asked``:
    after one, a run of seven digits or more, in groups or not, is taken for theirs, dates, times and
    prices aside."""
    single, runs, linked = _numbers(asked)
    theirs = single | linked | {"".join(run) for run in runs if len("".join(run)) >= 3}
    shown = nfkc_view(answer)[0]
    if _ENDING.search(shown):
        return True
    if any(placeholder in asked for placeholder in _REDACTED_NUMBERS):
        unpriced = PRICE.sub(" ", DATE_OR_TIME.sub(" ", shown))
        if any(sum(ch.isdigit() for ch in run) >= 7 for run in _RUN.findall(unpriced)):
            return True
    single, runs, linked = _numbers(answer)
    return (not theirs.isdisjoint(single | linked | {"".join(run) for run in runs}) or any(len(n) >= 6 for n in single)
            or any(len(run) >= 3 and min(map(len, run[:-1])) >= 3 and len(run[-1]) >= 2 and len("".join(run)) >= 11
                   for run in runs))


# Where a customer lives, as an agent confirms it: a house number and a street ("221B Baker Street", "1600
# Amphitheatre Parkway"), a UK postcode ("NW1 6XE"), a US state and ZIP code ("CA 94043"), a Chinese street and
# number ("中关村大街27号", "文三路 478 号", "中关村大街甲27号", Hong Kong's "彌敦道100號", a section's "信義路五段7號",
# or Hong Kong's, named for where it runs: "德輔道中88號", "皇后大道東 183 號") or a courtyard, building, entrance or room
# ("27号院", "3号楼", "2单元", "1101室"), or a Hong Kong estate's block, floor and flat ("3座15樓", "15樓B室"), or a flat
# and floor as Hong Kong writes them in English ("Flat A, 4/F", "Shop 3, G/F").
_STREETS = ("Street|St|Road|Rd|Avenue|Ave|Lane|Ln|Drive|Dr|Boulevard|Blvd|Way|Court|Ct|Parkway|Pkwy|Place|Pl|Close"
            "|Crescent|Terrace|Square|Sq|Highway|Hwy|Gardens|Grove|Mews")
_US_STATES = ("AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ|NM|NY|NC"
              "|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY")
_CHINESE_DIGITS = "0-9一二三四五六七八九十百零〇"
_ADDRESS = re.compile(
    rf"(?<![0-9])[0-9]+[A-Za-z]?,? (?:[A-Z][A-Za-z'-]* ){{1,3}}(?:{_STREETS})\b"
    r"|(?i:(?<![0-9])[0-9]+[a-z]?,? (?:[a-z][a-z'-]* ){1,3}(?:street|road|avenue|boulevard|parkway|lane)\b)"
    r"|\b[A-Z]{1,2}[0-9][A-Z0-9]? ?[0-9](?![KMGTP]B\b)[A-Z]{2}\b"  # a size is no postcode: "M2 8GB", "PS5 1TB"
    rf"|\b(?:{_US_STATES}),? [0-9]{{5}}(?:-[0-9]{{4}})?\b"
    rf"|(?:(?:路|街|(?<![知通频頻渠味轨軌难難报報一])道)(?: ?[东東西南北中](?![路街道]))?|巷|弄|胡同|[一二三四五六七八九十]段)"
    rf" ?[甲乙丙丁]? ?[{_CHINESE_DIGITS}]+ ?[号號]"
    rf"|(?<![{_CHINESE_DIGITS}])[{_CHINESE_DIGITS}]+(?:[号號][院楼樓]|[栋棟幢]|[单單]元|室)"
    r"|(?<![0-9])[0-9]+ ?座 ?[0-9]+ ?[楼樓]|(?<![0-9])[0-9]+ ?[楼樓] ?[A-Za-z0-9]{1,5} ?室"
    r"|\b(?:Flat|Room|Rm|Unit|Shop) [A-Z0-9]{1,5}, ?(?:[0-9]{1,3}|G|LG|UG)/F\b")
# What a whole address line holds around the street and number, the postcode or the room :data:`_ADDRESS` finds: the
# province, city and district before a Chinese street (北京市朝阳区建国路88号), and the road's name; the building
# after it (SOHO现代城, 腾讯大厦) and its block and room; an English line's town and state or postcode, and its flat
# ("12 Main Street, Apt 4B, Springfield, IL 62704"). A place's name is Chinese characters but those that end a
# division or a road and those a sentence puts before an address (寄到, 地址是, 我的, 改成, 或), so "请寄到" and
# "改成" stay, and two addresses joined by "或" are two.
_PLACE_NAME = ("(?:(?![省市区區县縣旗镇鎮乡鄉路街道巷弄号號到至在寄送发發住是为為請请的往给給把址我你您他她或者])"
               "(?!(?<=[改换換变變更写寫填])成)[\u4e00-\u9fff])")
_ROAD = re.compile(r"[路街道巷弄胡段]")
_DIVISIONS = rf"(?:{_PLACE_NAME}{{1,7}}(?:[省市区區县縣旗镇鎮乡鄉]|街道))*"  # 街道: a city's subdistrict, 粤海街道
_ESTATE = "(?:大厦|大廈|广场|廣場|中心|花园|花園|小区|小區|公寓|大楼|大樓|苑|城|园|園|村|阁|閣|府|邸)"
# Before 建国路88号: 北京市朝阳区建国; and before a lane's or a section's number, the road it is on and the road's
# number or section too (上海市浦东新区张江路100 before 弄5号, 台北市信義區信義路 before 五段7號, 重慶南路一段122 before 巷5號).
_ROAD_NAME_BEFORE = re.compile(rf"{_DIVISIONS}{_PLACE_NAME}{{0,8}}(?:[路街道](?:[一二三四五六七八九十]段)?[0-9]*)?$")
_ESTATE_BEFORE = re.compile(rf"{_DIVISIONS}(?:{_PLACE_NAME}{{0,8}}{_ESTATE})?$")  # before 27号院: 朝阳区望京花园
_BUILDING_AFTER = re.compile(rf" ?(?:{_PLACE_NAME}|[A-Za-z0-9]){{0,12}}?{_ESTATE}")
# Or a building's name with no such word (天河路385号太古汇), where the line ends after it: "385号的快递" and "385号吗"
# go on as a sentence.
_BUILDING_NAME = rf"(?![吗嗎呢吧啊呀哦么麼了嘛谢謝]){_PLACE_NAME}"
_NAME_AFTER = re.compile(rf"{_BUILDING_NAME}(?:{_BUILDING_NAME}|[A-Za-z0-9]){{0,11}}(?!\w)")
_TOWN_AFTER = re.compile(r"(?:, ?(?:(?:Apt|Apartment|Suite|Ste|Unit|Flat|Floor|Room|Rm)\.? ?#?[A-Za-z0-9-]+"
                         r"|[A-Z][A-Za-z'.-]+(?: [A-Z][A-Za-z'.-]+){0,2})){1,3}")
# What may stand between two parts of one line: a town's capitalised words and commas (", London ", ", Springfield, "),
# or, beside Chinese, a building's name (SOHO现代城) or nothing.
_TOWN_BETWEEN = re.compile(r",? ?(?:[A-Z][A-Za-z'.-]*(?: [A-Z][A-Za-z'.-]*){0,3},? ?){0,3}")
_BUILDING_BETWEEN = re.compile(rf" ?(?:{_PLACE_NAME}|[A-Za-z0-9]){{0,12}} ?")
# Or two divisions or more (a city and its district) and what follows them up to a room's number, written apart
# (望京SOHO T1 1201) or as Chinese addresses number a block, entrance and room (万科城3-2-1201): the line a shop's app
# copies a delivery's details in, with no street (王小明，13812345678，北京市 朝阳区 望京街道 望京SOHO T1 1201). A place
# named and then an amount or a product (上海市浦东新区满200包邮吗, 江苏省南京市 2000 元, 深圳市南山区 iPhone 256) is a
# question: the building's name after the divisions is Chinese. Five divisions at most (a province, city, district,
# subdistrict and town): unbounded, a long run of them was read again from each of its characters, in its square.
_DIVIDED = re.compile(
    rf"(?:{_PLACE_NAME}{{1,7}}(?:[省市区區县縣旗镇鎮乡鄉]|街道) ?){{2,5}}{_PLACE_NAME}(?:{_PLACE_NAME}|[A-Za-z0-9]| (?=[A-Za-z0-9])){{0,29}}?"
    r"(?: [A-Za-z]*[0-9]{3,4}|(?<![0-9])[0-9]{1,2}-[0-9]{1,2}(?:-[0-9]{3,4})?)(?![0-9-])")


def address_lines(view: str) -> list[tuple[int, int]]:
    """Where ``view`` gives an address, each line whole (:data:`_PLACE_NAME`'s comment): what redaction must take
    out of training data, where a city and district left around "[ADDRESS]" still said where one customer lives.
    A city alone ("do you ship to Beijing?", 北京市朝阳区有货吗) is no address, unless a label says it is one
    (:func:`_labelled_addresses`)."""
    spans: list[tuple[int, int]] = []
    for match in _ADDRESS.finditer(view):
        start, end = match.span()
        before = _ROAD_NAME_BEFORE if _ROAD.search(match.group(0)) else _ESTATE_BEFORE
        start = before.search(view, max(0, start - 60), start).start()  # type: ignore[union-attr]  # matches empty
        if spans and _between(view[spans[-1][1]:start]):
            start = spans.pop()[0]
        after = _BUILDING_AFTER.match(view, end) or _TOWN_AFTER.match(view, end) or _NAME_AFTER.match(view, end)
        spans.append((start, after.end() if after else end))
    return merged_spans([*spans, *(line.span() for line in _DIVIDED.finditer(view)), *_labelled_addresses(view)])


# What says the value after it is an address, whatever its shape (地址：, 收货地址是, 住址为, 地址改成, "address:", and a
# form's 所在地区：, its city and district, and "address line 1:"): but not an e-mail's, an IP's, a web page's or a
# wallet's. And a sentence that gives the customer's own ("my address is", "the new address is", "change my address
# to", "I live at"), where an address starts with a number, a capital or a Chinese character ("12 Baker Street", "Rose
# Cottage", 望京SOHO): "the address is wrong" says what is wrong with it, "I live at home" says no more, and "what is
# the address of your store" asks for the shop's.
_ADDRESS_LABEL = re.compile(r"(?i)(?<![a-z_])(?<!e-mail )(?<!email )(?<!ip )(?<!web )(?<!mac )address(?: line ?[1-3])? ?(?:[:：]|是|为|為|係)"
                            r"|(?<![a-z])(?:(?:my|our|the|new)(?: new| delivery| shipping| home| billing)? address"
                            r"(?: is(?: now)?| should be| has changed to| changed to)"
                            r"|(?:change|changed|update|updated) (?:my|the|our) (?:delivery |shipping |home )?address to"
                            r"|(?:i|we) live at)"
                            r" ?[:：]?(?= *(?:[0-9\u4e00-\u9fff]|(?-i:[A-Z])(?!K\b|\b)))"
                            r"|(?<!邮件)(?<!郵件)(?<!邮箱)(?<!郵箱)(?<!网站)(?<!網站)(?<!链接)(?<!鏈接)(?<!钱包)(?<!錢包)(?<![Ii][Pp])"
                            r"(?:地址|住址|所在地区|所在地區)(?:[:：]|是|为|為|係|(?:改|换|換|更改|修改|变更|變更|更新)(?:成(?!功)|为|為)了?)")
# The value: up to its line's or sentence's end, the next field ("电话：", "Phone:"), a placeholder, or a comma, unless a
# capitalised word or a number follows it ("Flat 3, Tower B, Kowloon"; 88号，1101室), or thanks, or a word that goes on
# with the sentence ("…, London and my phone is …"), 80 characters at most;
# none where it asks about the address or says it is wrong (地址是什么, 地址是哪里, 地址是错的, 地址为空, "address: ?"), or
# names one by reference (地址改为公司地址, 地址改成原来的, 地址同上).
_LABELLED_VALUE = re.compile(
    r" *(?!什么|什麼|哪|在哪|啥|多少|不|没|沒|错|錯|对|對|正确|正確|空|怎|如何|一样|一樣|吗|嗎|呢"
    r"|公司地址|家里|家裡|原来|原來|之前|以前|这个|這個|那个|那個|下面|如下|同上)"
    r"(?:(?!,? ?[^\W\d_]{1,8}[:：])(?!,(?! ?[A-Z0-9]))(?! ?(?:谢谢|謝謝|多谢|多謝|麻烦|麻煩|请|請|thanks|thank you|please)\b| (?:and|but|because|so|if|when|can|could|would|will)\b)"
    r"[^\n.;!?。！？；\[]){1,80}")  # bounded: a value read from each of many labels in one long run took its square


def _labelled_addresses(view: str) -> list[tuple[int, int]]:
    """The values ``view`` gives after a label that names them an address (:data:`_ADDRESS_LABEL`), a building with
    no street or number too (地址是深圳市南山区腾讯大厦, 地址：北京市朝阳区望京SOHO T1 1201)."""
    spans = []
    for label in _ADDRESS_LABEL.finditer(view):
        if (value := _LABELLED_VALUE.match(view, label.end())) and value.group().strip():
            spans.append((label.end() + len(value.group()) - len(value.group().lstrip()),
                          label.end() + len(value.group().rstrip())))
    return spans


def _between(gap: str) -> bool:
    """Whether ``gap`` joins two parts of one address line (:data:`_TOWN_BETWEEN`, :data:`_BUILDING_BETWEEN`)."""
    return bool(_TOWN_BETWEEN.fullmatch(gap) or _BUILDING_BETWEEN.fullmatch(gap)
                and (not gap.strip() or re.search("[\u4e00-\u9fff]", gap)))


# Whom an agent writes to or sends to, by name: "Hi John", "Dear Ms Brown", "Thanks Maria", "Mr. Peter Brown",
# "recipient: Jane", 张先生, 王女士, 收件人张伟; but not "Hi there", "Dear customer", 尊敬的先生/女士, 收件人信息.
_NOT_GREETED = ("there|team|all|everyone|everybody|customers?|sir|madam|friends?|folks|guys|again|valued|so|very|for|and"
                "|we|you|your|our|the|this|that|it|please|sorry|yes|no|ok|okay|sure|welcome|good|great|just|kindly"
                "|unfortunately|apologies|here|how|what|when|where|let|as|in|on|at|to|from|with|i|thanks?|could|can"
                "|of|happy|glad|certainly|absolutely|hope|is|are|do|does|would|will|if")
# A name, in any alphabet customers write one in: John, Ólafur, Müller, Anna-Lena, McDonald, LeBron, D'Angelo,
# JOHN; not an acronym of two or three capitals nor one of the brands agents thank for a delivery or a payment.
_BRANDS = "UPS|DHL|USPS|FedEx|PayPal|AliPay|Alipay|WeChat|iPhone|eBay|YouTube|WhatsApp|LinkedIn|TikTok|DoorDash|GitHub"
_NAMED = rf"(?!(?:{_BRANDS})\b)(?!\p{{Lu}}{{2,3}}\b)\p{{Lu}}[\p{{L}}\p{{M}}'’-]*"
# Two or three characters from a common surname, but not the words agents greet with that start as one does
# ("您好，谢谢！", "亲爱的顾客，").
_CHINESE_NAME = rf"(?!{SURNAME_LIKE_WORDS.pattern})[{''.join(sorted(SURNAMES))}][\u4e00-\u9fff]{{1,2}}"
_ADDRESSED = regex.compile(
    r"(?<!\p{L})(?:[Hh]i|[Hh]ello|[Hh]ey|[Dd]ear|[Tt]hanks|[Tt]hank you|[Gg]ood (?:morning|afternoon|evening)|[Hh]ola"
    r"|[Hh]allo|[Bb]onjour|[Cc]iao)"
    # the name ends the greeting ("Hi John," "Thanks Maria!"): "Hi, Thanks for your patience" greets no one
    rf"[,!]? +(?!(?i:{_NOT_GREETED})\b){_NAMED}(?: {_NAMED}){{0,2}}(?= *[,!.?:;]| *$| +-)"
    rf"|(?<!\p{{L}})(?:Mr|Mrs|Ms|Miss|Mx)\.? {_NAMED}"
    rf"|(?<!\p{{L}})(?:[Rr]ecipient|[Aa]ddressee)[:：]? +{_NAMED}|(?<!\p{{L}})(?:[Aa]ttn|ATTN|[Cc]/[Oo])\.?[:：]? *{_NAMED}"
    r"|(?![的位这這那哪各敬爱愛我您你他她们們亲親])[\u4e00-\u9fff](?:先生|女士|小姐)(?![们們姐])"
    # Hong Kong's Cantonese ones, a surname and 生, 太 or 太太 ending the greeting: 陳生，黃太你好 (not 周生生, 學生)
    rf"|(?<![\u4e00-\u9fff])[{''.join(sorted(SURNAMES))}](?:生|太太?)(?=[,，!！。.~～ ]|你好|您好|$)"
    # a greeting by a Chinese name, from a common surname, the name alone before the greeting's end: 您好张伟，亲爱的李娜！
    rf"|(?:您好|你好|亲爱的|親愛的|尊敬的)[,，]? *{_CHINESE_NAME}(?=[,，!！。.~～]| *$)"
    rf"|(?<![\u4e00-\u9fff]){_CHINESE_NAME}[,，]? *(?:您好|你好)"
    rf"|{PERSON_FIELDS}(?:是|为|為|改为|改成|改為|[:：])? *"
    r"(?!信息|資訊|姓名|名字|地址|电话|電話|手机|手機|本人|的|我|是|为|為)[\u4e00-\u9fff]{2,4}"
    r"(?=[^\u4e00-\u9fff]|$|先生|女士|小姐|的|电话|電話|手机|手機)")


def about_one_person(asked: str, answer: str) -> bool:
    """Whether an agent's answer names its customer or where they live: an address (:data:`_ADDRESS`), a
    greeting or recipient by name (:data:`_ADDRESSED`), a WeChat ID or QQ number, or a name the customer gave
    as their own in ``asked`` ("my name is John Smith", "I'm John", "我叫张伟"). Redaction finds none of
    these but the ID (and none with ``privacy.redact: false``), and "Hi John Smith, I've changed the delivery
    address to 221B Baker Street" would be shown to the next customer asking to change theirs. A shop's own
    address or account in an answer is lost with them: it belongs in a template."""
    shown = nfkc_view(answer)[0]
    if _ADDRESS.search(shown) or _ADDRESSED.search(shown):
        return True
    if any(account_id(match) for match in ACCOUNT.finditer(shown)):
        return True
    return any(re.search(rf"(?<![A-Za-z]){re.escape(name)}(?![A-Za-z])", shown, re.IGNORECASE)
               for name in given_names(asked))


def recent_traffic(store: Store, limit: int, redacted: bool = True) -> list[str]:
    """The latest ``limit`` distinct customer messages, labelled or not, redacted like :func:`learned_data`'s
    examples.

    A picture or a file recorded for an agent (:data:`~dialogues.holding.SENT`) is no message to answer.
    A warm-started retrain holds the candidate to the serving model's answers on them, so that labels
    for a few intents do not move the answers customers get for the rest.
    """
    learned = _learned(redacted)
    return [learned(text) for text in store.recent_messages(limit) if text not in SENT_TEXTS] if limit else []


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="seconds")


def write_jsonl(data: LearnedData, out: TextIO) -> int:
    """One JSON object per line, examples first; returns the number of lines."""
    lines = 0
    for row in data.examples:
        out.write(json.dumps({"type": "example", "text": row["text"], "intent": row["intent"],
                              "turn_id": row["turn_id"], "created": _iso(row["created"])}, ensure_ascii=False) + "\n")
        lines += 1
    for row in data.answers:
        out.write(json.dumps({"type": "answer", "question": row["question"], "answer": row["answer"],
                              "intent": row["intent"], "answer_id": row["id"], "created": _iso(row["created"])},
                             ensure_ascii=False) + "\n")
        lines += 1
    return lines
