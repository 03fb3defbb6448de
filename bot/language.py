"""Which language a turn is answered in: English or Chinese.

A bot with ``language: en`` or ``zh`` always answers in that language. A ``multi`` bot answers in
the language of the customer's latest typed message: Chinese when it has a Chinese character,
English otherwise. A button's payload (``/track_order``) or an order number is in no language, so
the conversation keeps the last one seen, in its ``language`` slot.

Every text the bot itself says (the fallback, the handoff notices, button titles) may be one string
or one per language, so a ``multi`` bot never answers a Chinese customer in English. Its Chinese comes
in the script the customer writes, Traditional or Simplified (:func:`chinese_script`).
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Mapping
from datetime import date
from functools import partial
from typing import Annotated, Any, Literal, cast, get_args

import opencc
from pydantic import AfterValidator, PlainValidator

from dialogues.holding import asks_nothing
from retrieval.text import HONG_KONG, INVISIBLE, TRADITIONAL, WRITTEN_TRADITIONAL, model_text

Language = Literal["en", "zh"]
LANGUAGES: tuple[Language, ...] = get_args(Language)

READABLE = f"[^{INVISIBLE}]"  # a message has something to answer when it has one such character
_READABLE = re.compile(READABLE)


def blank(text: str) -> bool:
    """Whether ``text`` shows nothing: only spaces and invisible characters (``INVISIBLE``)."""
    return _READABLE.search(text) is None


def visible(text: str) -> str:
    """A text the bot shows must show something: a blank button title is a button without a name (Slack
    refuses the whole message), a blank payload a click that sends nothing, a blank reply silence."""
    if blank(text):
        raise ValueError("a text may not be blank")
    return text


Visible = Annotated[str, AfterValidator(visible)]


# How a language is written otherwise than deskbot's en and zh: a locale (zh-CN, zh_TW, en-US), a country (cn, tw, hk),
# its name, in English or Chinese
_LANGUAGE_NAMES = re.compile(r"(?i)\s*(?:(?P<zh>zh(?:[-_]\w+)*|cn|chs|cht|tw|hk|chinese|mandarin|cantonese|中文|汉语|漢語|"
                             r"简体中文|簡體中文|繁体中文|繁體中文|简体|繁體|繁体|普通话)|(?P<en>en(?:[-_]\w+)*|english|英文|英语|英語))\s*")


def language_meant(value: Any) -> str | None:
    """The language of deskbot's that a ``language:`` it refused (``zh-CN``, ``ZH``, ``chinese``, ``繁體中文``) means,
    or None."""
    match = _LANGUAGE_NAMES.fullmatch(value) if isinstance(value, str) else None
    return None if match is None else "zh" if match["zh"] else "en"


class KeyMistake(ValueError):
    """A mistake in one key of a mapping (the ``fr:`` of a text per language), which a file's check names on that key's
    line: the line of the mapping's own key sent an editor looking through its every language."""

    def __init__(self, key: Any, message: str) -> None:
        super().__init__(message)
        self.key = key


def mistake_in(key: Any, message: str) -> ValueError:
    """The error ``message`` about the value of ``key`` of a mapping (a :class:`KeyMistake`), or about a value that
    is no mapping's (None)."""
    return ValueError(message) if key is None else KeyMistake(key, message)


def per_language(text: Text) -> list[tuple[Language | None, Any]]:
    """A text as its languages' texts, each with its language (None: one text for every language)."""
    return [(None, text)] if not isinstance(text, dict) else list(text.items())


def _text(value: Any) -> str | dict[Language, str]:
    """One message for a config error, where pydantic's would list what each branch of the union wanted.
    A blank text is refused (:func:`visible`), and a language deskbot names otherwise ({cn: 申请退款}) is told with
    the name to write: "expected a text, or one text per language" did not say which key was wrong. A mistake in
    a text per language is one of its language's key (:class:`KeyMistake`)."""
    texts: list[tuple[Any, Any]] = [(None, value)]
    if isinstance(value, dict) and value and set(value) <= set(LANGUAGES):
        texts = list(value.items())
    elif isinstance(value, dict) and (others := [key for key in value if key not in LANGUAGES]):
        meant = language_meant(others[0])
        raise KeyMistake(others[0], f"{others[0]!r} is no language of deskbot's ({', '.join(LANGUAGES)})"
                         + (f": write {meant!r}" if meant else "") + "; one text per language is {en: ..., zh: ...}")
    if odd := [(key, text) for key, text in texts if not isinstance(text, str)]:
        key, text = odd[0]
        hint = f" (YAML reads {text!r} as {type(text).__name__}: put it in quotes)" \
            if isinstance(text, (bool, int, float, date)) else ""  # message: 110, titles: {get_refund: No}
        raise mistake_in(key, f"expected a text, or one text per language: {{en: ..., zh: ...}}{hint}")
    for key, text in texts:
        try:
            visible(text)
        except ValueError as exc:
            raise mistake_in(key, str(exc)) from None
    return value


# One text for every language, or one per language: {en: "Talk to a person", zh: 转人工}
Text = Annotated[str | dict[Language, str], PlainValidator(_text)]
SLOT = "language"  # the slot that holds a multi bot's conversation language
SCRIPT = "chinese_script"  # the slot that holds the Chinese script a conversation's customer writes
# Traditional in Taiwan's standard forms, or in Hong Kong's (後台, 裏面, 衞生 where Taiwan's write 後臺, 裡面, 衛生).
Script = Literal["traditional", "hongkong", "simplified"]
# Chinese characters (the extensions beyond the BMP too) and Bopomofo, which Taiwan writes with them ("ㄏㄏ").
CJK = re.compile(r"[\u3100-\u312f\u31a0-\u31bf\u3400-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")


# Characters only written Cantonese has (嘅, 咗, 冇, 佢, 唔…; 咩 and 乜, "what", 咁, "so", 啱, "right", 諗, "think",
# and the particles 㗎 and 喎), and its 係 ("is", not 關係's): a customer who writes them reads Hong Kong's forms.
CANTONESE = re.compile(r"[嘅咗冇哋嘢啲喺佢嚟睇嗰搵揾畀攞噉嘥冚唔咩乜咁啱諗谂㗎喎]|(?<![關关])係")
# Cantonese words Hong Kong writes with characters OpenCC's Traditional forms change, as if they were Simplified ones: 晒
# ("all": 唔該晒, 多謝晒; 曬 is "to dry in the sun"), 郁 ("to move": 唔好郁). They say nothing of the script: "唔該晒" was
# answered in Simplified characters.
_CANTONESE_AS_WRITTEN = frozenset("晒郁")
# Japanese kana: a Japanese customer writes kanji too, which read as Chinese (注文 as Simplified, for 註).
KANA = re.compile(r"[\u3041-\u3096\u30a1-\u30fa]")


def written_in(text: str) -> Language:
    return "zh" if CJK.search(text) else "en"


# What is read in no language: a link (also a Markdown link's target) or an e-mail address. Chinese text runs on
# after one without a space ("详见 https://shop.example/returns。退货需…", "发邮件至help@shop.cn，我们…"), so an
# address ends at Chinese or other punctuation, and an e-mail address's name is ASCII unless it stands alone
# (售后@shop.cn): read to the next space, the rest of the answer stayed in the shop's script.
_ADDRESS_CHARS = r"[^\s\u2000-\u206f\u3000-\u303f\uff00-\uffef]+"
_ADDRESSES = re.compile(rf"\]\([^)]*\)|https?://{_ADDRESS_CHARS}|(?:(?<![!-~])[!-~]+|(?<!\S)[^\s!-~]+)@{_ADDRESS_CHARS}")
_ADDRESS_PIECES = re.compile(rf"({_ADDRESSES.pattern})")


def mostly_written_in(text: str) -> Language:
    """The language a text is written in, links and addresses aside, for the shop's answers, which may name
    a Chinese carrier in an English sentence ("We ship with 顺丰速运.") or English brands in a Chinese one
    ("用 Apple Pay 或 Google Pay 付款。"): any Chinese character would make the first Chinese, and no
    English customer would get it. A sentence's own words hold its names between them, so the script with
    more stretches of text wins ("用", "或", "付款" against "Apple Pay", "Google Pay"); at a draw, Chinese
    when its words, two characters each (a Chinese word's usual length), are at least as many as the
    Latin ones. A short answer made mostly of English names ("iPhone 15 Pro Max 有货") counts as English."""
    text = _ADDRESSES.sub(" ", text)
    scripts = ["zh" if CJK.match(c) else "en" for c in text if CJK.match(c) or c.isascii() and c.isalpha()]
    stretches = [script for script, _ in itertools.groupby(scripts)]
    chinese, english = stretches.count("zh"), stretches.count("en")
    if chinese != english:
        return "zh" if chinese > english else "en"
    return "zh" if chinese and scripts.count("zh") / 2 >= len(re.findall(r"[A-Za-z]+", text)) else "en"


def foreign(text: str, language: Language) -> bool:
    """Whether a bot of one ``language`` must not give this answer, written in the other (an agent may have
    answered a customer in English in a Chinese shop). Looser than :func:`mostly_written_in`, which a
    bilingual bot choosing between two answers needs: a Chinese bot keeps "AirPods Pro 2 支持 MagSafe" and
    "400-820-8820", whatever their share of Latin letters."""
    text = _ADDRESSES.sub(" ", text)
    if language == "zh":
        return not CJK.search(text) and re.search(r"[A-Za-z]", text) is not None
    return mostly_written_in(text) == "zh"


# The punctuation a Chinese input method types: CJK's own (、。「」【】) and the full-width forms of ASCII's (？！，：).
_CHINESE_PUNCTUATION = re.compile(r"[\u3001-\u303f\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65]")
# Characters of Chinese grammar (pronouns, particles, the commonest verbs and question words), which a sentence in
# Chinese has and a place's, a company's or a person's name quoted in an English one ("to 上海市徐汇区") has not.
_CHINESE_GRAMMAR = re.compile("[我你您他她它们的了吗呢吧啊是在要想请帮怎么哪啥谁没不能会给把被这那个]")


# A customer asking for the other language by name: "can you speak English?", "English please", 我想用英文交流, 请说英语,
# 换成英文; "reply in Chinese please", "do you speak Mandarin?". Not a language named for something else: "is the
# manual in English?", "we speak Cantonese at home", "I use Chinese characters", 英文说明书, 用英文写的 ask for nothing.
_ENGLISH = "(?:英文|英语|英語)"
_NOT = r"(?<!n't )(?<!n’t )(?<!not )(?<!cannot )(?<!never )"  # "please don't reply in Chinese" asks for nothing
_ASK = (r"(?:^\W*|\b(?:can|could|would|will|do)\s+(?:you|u)\s+|\b(?:please|pls|plz)\s+"
        r"|\bi(?:'d| would)?\s+(?:like|want|prefer)\s+(?:to|you to)\s+)"  # a request, not what someone does
        r"(?:speak|use|talk in|chat in|reply in|answer in|write in|respond in)"
        r"|\b(?:reply|answer|write|respond|talk)(?: to me)? in|\b(?:switch|change)(?: it)? to")
_ASKED_FOR = {
    "en": re.compile(rf"(?i){_NOT}(?:{_ASK})\s+english\b|\benglish\s+(?:please|pls|plz)\b|^\W*(?:in\s+)?english\W*$"
                     rf"|(?<![不没沒唔])(?<!不会|不會|不能|唔識|唔會)(?:说|說|讲|講|换成|換成|改成|改用|切换[到成]?|切換[到成]?){_ENGLISH}"
                     rf"|{_ENGLISH}(?:交流|沟通|溝通|回复|回覆|回答|聊|对话|對話|客服)"),
    "zh": re.compile(rf"(?i){_NOT}(?:{_ASK})\s+(?:chinese|mandarin|cantonese)\b"
                     r"|\b(?:in\s+)?(?:chinese|mandarin|cantonese)\s+(?:please|pls|plz)\b|^\W*(?:in\s+)?(?:chinese|mandarin)\W*$"),
}


def asked_for(text: str) -> Language | None:
    """The language a customer asks to be answered in by name (:data:`_ASKED_FOR`), or None: "我想用英文交流" was
    answered in Chinese for its Chinese characters, and "Chinese please" in English for its English words."""
    return next((language for language in LANGUAGES if _ASKED_FOR[language].search(text)), None)


def turn_language(bot_language: str, text: str, previous: str | None = None, page: str | None = None) -> Language:
    """The language to answer ``text`` in. A button's payload (``/`` and a name, whatever the name is written
    in, an action's own too), or a message with no letter in it (an order number, an emoji) but a link's or an
    e-mail address's, keeps ``previous``, the conversation's, or before it has one the ``page``'s (the widget's).
    So do a single word (numbers, links and e-mail addresses aside: "sam@example.com thanks", the proof an order
    lookup asked a Chinese customer for, was answered in English), an acknowledgement and a few names in a conversation already held in Chinese:
    Chinese customers type "ok thx", a product's name ("iPhone 15 Pro Max") or their own ("Zhang Wei")
    between Chinese messages, and were answered in English for it; so do a few keywords ("iPhone case", "track
    order": :func:`keywords`); it takes a sentence ("refund please") to switch. A first "hello" on a Chinese page
    is English's: nothing Chinese was said yet. Another script (Korean, Japanese, Cyrillic) is English's, not the
    conversation's, as a first message's is. Full-width letters, which a Chinese input method types ("ＯＫ"), are
    read as the letters they are: a Chinese customer's "ＯＫ" was answered in English. A first message with no
    letter and nothing to keep is Chinese's when it has the punctuation a Chinese input method types ("？？？",
    "。。。"), which was answered in English. Chinese in an English conversation switches it when it is a sentence, not
    when it is a name in an English one (an address: "to 上海市徐汇区", after which the whole conversation went on in
    Chinese): a message with an English word and no character of Chinese grammar keeps English."""
    if bot_language in LANGUAGES:
        return cast(Language, bot_language)
    typed_in_chinese = _CHINESE_PUNCTUATION.search(text) is not None
    text = unicodedata.normalize("NFKC", text)
    if requested := asked_for(text):
        return requested
    kept = previous or page or ("zh" if typed_in_chinese else None)
    if text.startswith("/") and kept in LANGUAGES:
        return cast(Language, kept)
    if KANA.search(text):  # Japanese, kanji and all: another script, English's
        return "en"
    if CJK.search(text):
        quoted = previous == "en" and not _CHINESE_GRAMMAR.search(text)
        return "en" if quoted and re.search(r"[A-Za-z]{2}", _ADDRESSES.sub(" ", text)) else "zh"
    words = [word for word in _ADDRESSES.sub(" ", text).split() if any(c.isalpha() for c in word)]
    if not words:  # no letter, or only a link's or an e-mail address's, which are in no language
        return cast(Language, kept) if kept in LANGUAGES else "en"
    if toneless_pinyin(words) and not (previous == "en" and _pinyin_name(words)):
        return "zh"
    latin = all(c.isascii() for c in text if c.isalpha())
    return "zh" if previous == "zh" and latin and (len(words) == 1 or asks_nothing(text) or names(words)
                                                   or keywords(words)) else "en"


# Every syllable of Mandarin as Pinyin writes it, tones aside (ü as u or v: lü, lv).
_SYLLABLES = frozenset("""
a ai an ang ao ba bai ban bang bao bei ben beng bi bian biao bie bin bing bo bu ca cai can cang cao ce cen ceng
cha chai chan chang chao che chen cheng chi chong chou chu chua chuai chuan chuang chui chun chuo ci cong cou cu cuan
cui cun cuo da dai dan dang dao de dei den deng di dia dian diao die ding diu dong dou du duan dui dun duo e ei en eng
er fa fan fang fei fen feng fo fou fu ga gai gan gang gao ge gei gen geng gong gou gu gua guai guan guang gui gun guo
ha hai han hang hao he hei hen heng hong hou hu hua huai huan huang hui hun huo ji jia jian jiang jiao jie jin jing
jiong jiu ju juan jue jun ka kai kan kang kao ke kei ken keng kong kou ku kua kuai kuan kuang kui kun kuo la lai lan
lang lao le lei leng li lia lian liang liao lie lin ling liu lo long lou lu luan lue lun luo lv lve ma mai man mang
mao me mei men meng mi mian miao mie min ming miu mo mou mu na nai nan nang nao ne nei nen neng ni nian niang niao nie
nin ning niu nong nou nu nuan nue nuo nv nve o ou pa pai pan pang pao pei pen peng pi pian piao pie pin ping po pou pu
qi qia qian qiang qiao qie qin qing qiong qiu qu quan que qun ran rang rao re ren reng ri rong rou ru rua ruan rui run
ruo sa sai san sang sao se sen seng sha shai shan shang shao she shei shen sheng shi shou shu shua shuai shuan shuang
shui shun shuo si song sou su suan sui sun suo ta tai tan tang tao te teng ti tian tiao tie ting tong tou tu tuan tui
tun tuo wa wai wan wang wei wen weng wo wu xi xia xian xiang xiao xie xin xing xiong xiu xu xuan xue xun ya yan yang
yao ye yi yin ying yo yong you yu yuan yue yun za zai zan zang zao ze zei zen zeng zha zhai zhan zhang zhao zhe zhei
zhen zheng zhi zhong zhou zhu zhua zhuai zhuan zhuang zhui zhun zhuo zi zong zou zu zuan zui zun zuo""".split())
_LONGEST_SYLLABLE = max(map(len, _SYLLABLES))
# Syllables that are English words too ("he", "can", "long"): a message of these alone is English. English words of two
# or more syllables' letters ("are" a-re, "make" ma-ke, "see" se-e) are told apart below.
_ENGLISH_SYLLABLES = frozenset(
    "a an ban bang ben bin can cu dang den die ding dong er fan gang gen gong gun ha hang he hen hong ken kong la lie "
    "lin long ma man me men min nan pa pan pang pen pi pie pin ping ran rang re run sang she song sun ta tan tang tie "
    "wan wang ya yang ye yo you zen".split())
# What only Pinyin writes in a word of several syllables ("nihao", "tuihuo", "xiexie", "zhuanrengong"), where an English
# word's letters may be syllables too ("make", "change", "guide").
_PINYIN_ONLY = re.compile(r"ao|uo|iu|^(?:x|q|zh)")


# A tone typed as its number after a syllable ("wo3", "ni3hao3"), as a keyboard without tone marks writes it.
_TONE_NUMBER = re.compile(r"(?<=[a-zA-Zü])[1-5]")


def _letters(word: str) -> str:
    """``word`` in lower case, its tone marks ("wǒ") and numbers ("wo3") and the punctuation around it aside."""
    letters = "".join(c for c in unicodedata.normalize("NFKD", word.lower()) if not unicodedata.combining(c))
    return _TONE_NUMBER.sub("", letters).strip(".,!?;:~'\"()")


# Chinese surnames that open a name typed in Pinyin ("li na", "zhang wei") and no phrase a customer types in Pinyin.
_SURNAMES = frozenset(
    "li wang zhang liu chen yang zhao huang zhou wu xu sun zhu gao lin guo luo liang song zheng han tang feng dong "
    "xiao cao yuan deng fu shen zeng peng lu su jiang cai jia ding wei xue pan du dai xia zhong tian fang liao zou "
    "xiong jin kong bai cui kang mao qiu qin gu hou shao meng duan lei qian lai gong".split())


def _pinyin_name(words: list[str]) -> bool:
    """Whether ``words`` may be a Chinese name typed in lower-case Pinyin ("li na", "zhang xiao ming"): in a
    conversation held in English, it is the customer's name, not a switch to Chinese."""
    return len(words) <= 3 and _letters(words[0]) in _SURNAMES


def typed_in_pinyin(text: str) -> bool:
    """Whether ``text`` is Chinese typed in Pinyin without its characters (:func:`toneless_pinyin`)."""
    text = unicodedata.normalize("NFKC", text)
    return not CJK.search(text) and toneless_pinyin([word for word in text.split() if any(c.isalpha() for c in word)])


def _pinyin(letters: str) -> bool:
    """Whether ``letters`` are one or more Pinyin syllables written together ("dingdan", "xi'an")."""
    ends = {0}  # where a run of whole syllables may end
    for end in range(1, len(letters) + 1):
        if any(start in ends and letters[start:end] in _SYLLABLES
               for start in range(max(0, end - _LONGEST_SYLLABLE), end)):
            ends.add(end + (letters[end:end + 1] == "'"))
    return bool(letters) and len(letters) in ends


def toneless_pinyin(words: list[str]) -> bool:
    """Whether ``words`` are Chinese typed in Pinyin without its characters ("wo yao tui huo", "zai ma", "ni hao"),
    as a customer without a Chinese input method writes: read as English, they were answered in English. It takes two
    words or more, each one or more syllables, and not a few capitalised names ("Zhang Wei", which an English customer
    may give too); at least half of them must be Pinyin's alone: a syllable no English word ("he can" is English) or
    a word of several syllables that English does not write so ("nihao", not "make" or "see": "see you" is English)."""
    letters = [_letters(word) for word in words]
    if len(words) < 2 or names([_TONE_NUMBER.sub("", word) for word in words]) or not all(map(_pinyin, letters)):
        return False
    own = sum(word not in _ENGLISH_SYLLABLES if word in _SYLLABLES else bool(_PINYIN_ONLY.search(word))
              for word in letters)
    return 2 * own >= len(words)


# Words that make a request of capitalised ones ("Cancel My Order", "HELP ME"), never part of a name.
_REQUEST_WORDS = frozenset(
    "a an the i me my you your is are am was it to for of in on with and or not no please thanks thank where what "
    "when how why who can could do does did want need help get have has".split())


# And the words of a sentence besides (pronouns, articles, be and will): a few words with none of them are keywords.
_SENTENCE_WORDS = _REQUEST_WORDS | frozenset(
    "this that these those there be been will would should im ive dont cant didnt doesnt isnt wont we our they their "
    "at from by about still yet".split())


def keywords(words: list[str]) -> bool:
    """Whether ``words`` are a few keywords rather than a sentence: three at most, none of them a word a sentence is
    made of (:data:`_SENTENCE_WORDS`), as a Chinese customer types a product's name in lower case ("iphone case",
    "usb cable") or a request's keywords ("track order"); "where is my order" or "refund please" is a sentence."""
    return len(words) <= 3 and not any("".join(c for c in word.lower() if c.isalpha()) in _SENTENCE_WORDS
                                       for word in words)


def names(words: list[str]) -> bool:
    """Whether ``words`` are a few names (a person's, a product's): each capitalised ("Zhang", "Pro"), or
    with a capital or a digit inside ("iPhone", "M2"), as no word of an English request but its first is,
    and none a word requests are made of. A word in capitals is a name only when short or with a digit
    ("XL", "S24"): "WHERE IS MY ORDER" is a request typed with caps lock on."""
    def name(word: str) -> bool:
        letters = "".join(c for c in word if c.isalpha())
        if word.isupper() and len(letters) > 3 and not any(c.isdigit() for c in word):
            return False
        return (word[0].isupper() or any(c.isupper() or c.isdigit() for c in word[1:])) \
            and letters.lower() not in _REQUEST_WORDS
    return len(words) <= 4 and all(name(w) for w in words)


def say(text: Text, language: str, default: str | None = None, script: Script | None = None) -> str:
    """``text`` in ``language``; a text without that language gives ``default``, else its first one. Said in
    Chinese, it is written in ``script``, its customer's (:func:`in_script`)."""
    if not isinstance(text, str):
        text = text.get(language) or default or next(iter(text.values()))
    return in_script(text, script) if language == "zh" else text


def chinese_script(text: str, previous: Script | None) -> Script | None:
    """The script a customer writes Chinese in: traditional when ``text`` has characters only Traditional
    Chinese writes (訂單), simplified when it has some only Simplified writes (订单). A text with neither
    (你好, an order number) or both keeps ``previous``. A character Hong Kong and Taiwan write as it is,
    though OpenCC's own forms change it (台北, 一台電腦: 臺; Cantonese 晒 in 唔該晒), is no Simplified one: their
    customers were answered in Simplified. Traditional is Hong Kong's (``hongkong``) for a customer who writes Cantonese
    (佢, 冇, 嘅) without Simplified characters, or whose conversation is Hong Kong's already (a zh-HK page's)."""
    if not CJK.search(text) or KANA.search(text):  # Japanese kanji are in neither Chinese script
        return previous
    try:
        traditional = model_text(text) != text
        simplified = any(TRADITIONAL.convert(c) != c and HONG_KONG.convert(c) != c
                         for c in set(CJK.findall(text)) - _CANTONESE_AS_WRITTEN)
    except UnicodeEncodeError:  # half a surrogate pair, which the converter refuses
        return previous
    if CANTONESE.search(text) and not simplified:
        return "hongkong"
    if traditional == simplified:
        return previous
    if simplified:
        return "simplified"
    return "hongkong" if previous == "hongkong" else "traditional"


def kept_script(slots: Mapping[str, Any]) -> Script | None:
    """The script kept in a conversation's slots (``SCRIPT``); None for a value an action set there."""
    script = slots.get(SCRIPT)
    return script if script in get_args(Script) else None


# What OpenCC's phrases write wrong in a shop's answers, as Taiwan and Hong Kong write it: a support bot's 回复 is
# a reply (回覆), where OpenCC reads 请回复 as 回復 ("to restore") and 请回复数字 as 回複 (of 复数, "plural"); and its
# phrase 留发 ("to grow one's hair", 留髮) took 保留发票 ("keep the invoice") for 保留髮票, 预留发票 and 保留发货单 too. After
# a number in digits, 天后 is "days later" (14 天后, 天後), which OpenCC kept as the goddess's name (天后, Hong Kong's Tin Hau).
_MISREAD = {"回复": "回覆", "留发": "留發", "天后": "天後"}
_MISREAD_WORDS = re.compile(r"回复|留发|(?:(?<=\d)|(?<=\d ))天后")


def _written_traditional(text: str, forms: opencc.OpenCC = WRITTEN_TRADITIONAL) -> str:
    """``text`` in Taiwan's standard Traditional forms, or Hong Kong's (``forms``), the words OpenCC misreads
    (:data:`_MISREAD`) as they are written there. OpenCC's Taiwan phrases (s2twp) keep 回復 and 回複, and swap
    Hong Kong's words for Taiwan's (软件 as 軟體, 查看 as 檢視), so they are not used: one set of words
    answers both."""
    return forms.convert(_MISREAD_WORDS.sub(lambda match: _MISREAD[match.group()], text))


def in_script(text: str, script: Script | None) -> str:
    """What the bot says, in its customer's Chinese script: customers in Hong Kong and Taiwan, answered in
    the Simplified characters a shop writes its templates in (or the other way round), read another
    script than their own. Text in neither (English, a number) passes unchanged, as do links and e-mail
    addresses (…/help/退货 made 退貨 is another page) and text the converter refuses (half a surrogate pair)."""
    convert = {"traditional": _written_traditional, "hongkong": partial(_written_traditional, forms=HONG_KONG),
               "simplified": model_text}.get(script or "")
    if convert is None:
        return text
    try:  # the addresses, captured, are every other piece
        return "".join(piece if i % 2 else convert(piece) for i, piece in enumerate(_ADDRESS_PIECES.split(text)))
    except UnicodeEncodeError:
        return text
