"""Personal data out of text before it leaves the conversation store.

Exported training data, and the agent answers that retrieval may show to other customers, must not
carry one customer's email address (also spelt out to pass a filter, zhangsan [at] qq [dot] com), phone number, card, identity or passport number, QQ number,
WeChat, LINE or Telegram ID, Alipay account, IP address or birth date. Each is replaced by a placeholder such as ``[EMAIL]``, so a sentence keeps its shape for
training.

Support traffic is full of order numbers, so digits are redacted only when they are unmistakably
personal: a card number must have a card scheme's prefix and length, be written whole or in the
scheme's groups (or follow a word for a card, 卡号), and pass the Luhn check, unless it is written in the
scheme's groups and on its own (a card with a digit mistyped is still the customer's card), or follows a word for a bank's
card or account (银行卡号, 账号: a Chinese bank's account number has no Luhn digit); a Chinese resident ID
must hold a province, a real birth date and its checksum; an IBAN must pass its mod-97 check; and a
phone number must be written like one (a ``+`` country code and a length that country's numbers have,
``00`` for the ``+`` and a valid number, Hong Kong's or Macau's
code without it and a valid number in groups ``852 9123 4567``, a Chinese mobile ``1[3-9]xxxxxxxxx`` or landline
``010-62345678``, a UK number in groups that phonenumbers finds valid ``07911 123456``, a separated
North American ``(555) 010-0199``), or follow a word for a phone ("my number is", 电话); an extension written
after one goes with it (``010-62345678-8001``, ``ext. 23``, ``转8001``).
Lookarounds on digits are used instead of ``\\b`` because ``\\b`` sees no boundary between Chinese
text and digits.

Chinese input methods type full-width characters (``１３９…``, ``＠``, ``．``), which the ASCII
patterns would never see, so matching runs on an NFKC-normalised view of the text, while the
replacement is made in the text as written: everything outside a match keeps its characters.
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
import re
import string
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any

import phonenumbers
import regex

# Starts only where a run of its characters starts: tried from every position of a long run with no
# "@", the pattern would take time in the square of its length (a 100 KB action reply: 30 s). Names
# and domains may be written in any script (李四@163.com, José@correo.es, zhang@例子.中国); a
# top-level domain in Chinese must be one of the registry's, or "163.com的订单" would end at 单. An ASCII
# name may also start straight after a Chinese or Japanese character, where a first address ended
# (zhang@163.com或li@qq.com): its run ends at the next such character, so the time stays linear. A Chinese
# input method types the domain's dots as 。 (zhang@163。com), which NFKC leaves as it is.
_IDN_TLDS = "中国|中國|香港|台湾|台灣|新加坡|公司|网络|網絡|网址|网店|商城|商店|在线|集团|手机|移动|中文网|信息|企业|购物|游戏|娱乐|商标|公益|政务"
_UNSPACED = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
EMAIL = re.compile(rf"(?:(?<![\w.%+'-])[\w.%+'-]+|(?<=[{_UNSPACED}])[A-Za-z0-9_.%+'-]+)"
                   rf"@[\w-]+(?:[.。][\w-]+)*[.。](?:xn--[A-Za-z0-9-]+|[A-Za-z]{{2,}}|{_IDN_TLDS})")
# An address written to pass a platform's filter or a scraper, its "@" and dots spelt out: zhang dot san at gmail dot
# com, zhangsan [at] qq [dot] com, zhangsan (at) 163.com, zhangsan AT gmail DOT com, zhangsan艾特163点com (full-width
# ＠ and ．, zhangsan＠163．com, are EMAIL's in the NFKC view). Its domain ends in a common top-level domain; each part is
# a run of at most four, so the time stays linear. :func:`_spelt_email` keeps those that are one.
_SPELT_DOT = r"(?: ?[\[({<] ?dot ?[\])}>] ?| dot |点|點)"
_SPELT_TLDS = "com|net|org|edu|gov|cn|hk|tw|mo|sg|jp|kr|uk|de|fr|io|co|me|info|biz|us|ca|au|in|ru|es|it|nl|eu|xyz|top|vip|cc"
SPELT_EMAIL = re.compile(
    rf"(?i)(?<![A-Za-z0-9_.%+'-])[A-Za-z0-9_%+'-]+(?:(?:\.|{_SPELT_DOT})[A-Za-z0-9_%+'-]+){{0,3}}"
    r"(?P<at> ?[\[({<] ?(?:at|@) ?[\])}>] ?| ?艾特 ?| at )"
    rf"(?P<domain>[A-Za-z0-9-]+(?:(?:[.。]|{_SPELT_DOT})[A-Za-z0-9-]+){{0,3}}(?:[.。]|{_SPELT_DOT})(?:{_SPELT_TLDS}))(?![A-Za-z0-9-])")
# Domains of free mail, whose address a customer may write with a plain "at" and real dots (zhangsan at qq.com), where
# "bought it at amazon.com" names a shop; and the words before such an "at" that are no one's name (log in at qq.com).
_MAIL_DOMAINS = frozenset("gmail qq 163 126 yeah foxmail sina sohu aliyun hotmail outlook live yahoo icloud proton protonmail".split())
_NOT_MAILBOXES = frozenset("""me us it them him her you account accounts email mail login log sign signed registered inbox
address messages message up in on here there is was be""".split())
# Words that start no domain: "look at that dot com bubble".
_NOT_DOMAINS = frozenset("that this the my our your a an his her their its".split())
# Written whole, as 6 8 4, 6 4 4 4 or 4 4 4 4 2 (next to other numbers too: 张三 13812345678
# 110101199003077715), or in other groups but then not as part of a longer run of them.
CN_ID = re.compile(r"(?<![0-9A-Za-z])(?:(?:\d{6}[ -]?\d{8}[ -]?\d{3}|\d{6}([ -])\d{4}\1\d{4}\1\d{3}"
                   r"|\d{4}([ -])\d{4}\2\d{4}\2\d{4}\2\d)[\dXx](?![0-9A-Za-z])"
                   r"|(?<!\d[ -])\d(?:[ -]?\d){16}[ -]?[\dXx](?![0-9A-Za-z]|[ -]\d))")
# The 15-digit resident ID issued before 1999 (six for the place, the birth date as YYMMDD, three more), after a
# word for an identity card only: it has no checksum, and 15-digit order numbers are common. And after that word, an
# 18-digit one with a digit mistyped, its checksum failing: a province and a real birth date there are still the
# customer's (身份证号 110105194912310021). A social security card's and a driving licence's number is the holder's ID
# number (社保卡号, 驾驶证号).
CN_NAMED_ID = re.compile(r"(?i)(?:身份证|身份證|身分證|证件|證件|社保卡|社会保障卡|社會保障卡|驾驶证|駕駛證|驾照|駕照"
                         r"|(?<![a-z])(?:id|identity) card)(?: ?(?:号码|號碼|字号|字號|号|號|number|no\.?|#))?"
                         r"(?: ?(?:是|为|為|係|is))?\W{0,3}(?<![0-9A-Za-z])(\d{6}[ -]?(?:\d{8}[ -]?\d{3}[\dXx]|\d{6}[ -]?\d{3}))"
                         r"(?![0-9A-Za-z])")
# A US social security number: no area 000, 666 or 9xx, no group 00, no serial 0000 (the SSA's rules);
# written with spaces, or with none, only after its name, since "120 40 2000" is as likely a size or an amount.
_SSN_DIGITS = r"(?!000|666|9)\d{3}{0}(?!00)\d{2}{0}(?!0000)\d{4}(?!\d)"
SSN = re.compile(r"(?<!\d)" + _SSN_DIGITS.replace("{0}", "-"))
SSN_NAMED = re.compile(r"(?i)(?:ssn|social security)(?: ?(?:number|no\.?|#))?(?: (?:is|was))?\W{0,3}("
                       + _SSN_DIGITS.replace("{0}", " ?") + ")")
# A passport number after its name: one or two letters or none, then six to nine digits (E12345678, EA1234567,
# 123456789), in groups too, as a Chinese passport is read out (E 1234 5678); and a QQ number after its name: five to twelve digits. Written alone, either is an order number.
# The permits that stand for a passport between the Mainland, Hong Kong, Macau and Taiwan, which cross-border orders
# ask for at customs, count as one: 港澳通行证 C12345678, 回乡证 H1234567890 (ten digits in its older form), 台胞证 12345678.
PASSPORT = re.compile(r"(?i)(?<![a-z])(?:passport|护照|護照|通行证|通行證|回乡证|回鄉證|台胞证|台胞證|(?:home return|travel) permit)"
                      r"(?: ?(?:number|no\.?|#|号码|號碼|号|號))?(?: ?(?:is|was|是|为|為|係))?"
                      r"(?!\W{0,3}\d{4}[-./]\d{1,2}[-./]\d{1,2}(?!\d))\W{0,3}([a-z]{0,2} ?\d(?:[ -]?\d){5,9})(?![a-z0-9]|[ -]\d)")
# A birth date after its name (出生日期：1990-01-01, 生日是1990年1月1日, "date of birth: 12 March 1985", DOB 01/01/1990), with
# its year: with a name or a postcode it singles a customer out. A date alone is an order's or a delivery's.
_MONTHS = ("jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?"
           "|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?")
BIRTH_DATE = re.compile(
    r"(?i)(?:出生日期|出生年月日?|生日|(?<![a-z])(?:date of birth|birth ?date|birthday|dob|born(?: on)?))"
    r"(?: ?(?:是|为|為|係|is|was))?\W{0,3}"
    r"((?:19|20)\d\d(?:([-/.])\d{1,2}\2\d{1,2}|年\d{1,2}月\d{1,2}[日号號]?|[01]\d[0-3]\d)|\d{1,2}([-/.])\d{1,2}\3(?:19|20)\d\d"
    rf"|\d{{1,2}}(?:st|nd|rd|th)? (?:{_MONTHS})\.?,? (?:19|20)\d\d|(?:{_MONTHS})\.? \d{{1,2}}(?:st|nd|rd|th)?,? (?:19|20)\d\d)"
    r"(?![0-9])")
QQ = re.compile(r"(?i)(?<![a-z])(?:qq|企鹅)(?: ?(?:号码|號碼|号|號|number|no\.?|账号|帳號))?(?: ?(?:is|是|为|為|係))?"
                r"\W{0,3}(?<!\d)([1-9]\d{4,11})(?!\d)")
# A WeChat ID (six to twenty letters, digits, "_" and "-", from a letter) or a QQ number after its name: a
# handle alone must hold a digit, "_" or "-" ("WeChat official account" is none), one after "ID", 号, 是, a
# colon, or 加微信 ("add me on WeChat": 加我微信 zhangsan) need not (see :func:`account_id`). Hong Kong's customers
# write Cantonese 係 for 是 (我嘅微信號係 zhangwei88). Its names written to pass a platform's filter count too: 薇信, 威信,
# and a "v" after 加 or "+" (加v：zhangsan, +V zhang_san88). A comma may stand before it (加我微信，abc_123456), as a
# colon may; what a comma alone puts after the name is one only in a handle's shape ("微信, thanks" is none).
# And the handles of the messengers customers in Taiwan, Hong Kong and abroad give as theirs: a LINE ID and a Telegram
# one, its "@" before it (telegram @zhang_san88). "line" is a word ("line 2: …", "the line is busy123", "in line with"),
# so a LINE ID is one after "LINE" and ID, 帳號, a colon or 是 (line: chen88), after "my line is", or after 加 (加我line
# chen88); a number after "line" and a colon alone is a line's (:func:`account_id`). And an Alipay account
# (支付宝账号 zhangsan_88), whose other forms, a phone number or an email address, the rules before find. A number
# that a price's unit or decimals follow is none (支付宝 12800元).
ACCOUNT = re.compile(r"(?i)(?<![a-z])(?:微信|wechat|weixin|wx|vx|v信|薇信|威信|(?<=[加+])v(?![a-z])|qq|支付宝|支付寶|alipay"
                     r"|line(?= ?(?:号|號|账号|帳號|id(?![a-z])|[:：是为為係]))|(?<=my )line(?= is\b)|(?:(?<=加)|(?<=加我))line"
                     r"|telegram)"
                     r"( ?(?:号码|號碼|号|號|账号|帳號|id)(?: ?(?:是|为|為|係|is\b))?| ?[:：]|是|为|為|係| is\b)?"
                     r" *[:：,，]? *@?([a-z][-_a-z0-9]{5,19}|[1-9][0-9]{4,11})(?![-_a-z0-9]|\.\d| ?[元块塊])")
# The ID WeChat gives an account itself (wxid_ and up to twenty letters and digits), which customers copy from their
# profile and paste alone, without 微信 before it: read as the name "wx" and a handle, it was left as "wx[ID]".
WXID = re.compile(r"(?i)(?<![-_a-z0-9])wxid_[a-z0-9]{4,20}(?![-_a-z0-9])")
# What asks to be added on WeChat right before its name (加我微信, 加一下vx, 请加个人微信): a handle after it is an ID.
_ADD_ME = re.compile(r"加(?:我的?|一下|下|[个個])?(?:[个個]人)?$")
# A whole run of digit groups (4111 1111…, 4111.1111…), however long, in which _cards finds the cards: a
# date written before one (2023-11-20 4111 1111 1111 1111) must not take its first groups.
# Not after a "+" (a phone number's country code), a dash after a digit (the rest of an order number) or two
# capitals alone (a courier's tracking number, YT4990812542304; VISA4111… is a card).
CARD = re.compile(r"(?<![\d+])(?<!\d-)(?<![^A-Za-z][A-Z]{2})(?<!^[A-Z]{2})"
                  r"\d(?:(?: {0,2}[-./] {0,2}| {1,2})?\d){12,}(?!\d|-\d)")
# After a word for a bank card, a number of a card's length that passes Luhn, whatever its prefix: Chinese banks'
# own debit cards (ICBC's 9558…, 19 digits) belong to no international scheme's range. And one of 16 to 19 digits
# that fails it (:func:`_named_card`) after a word for a bank's card or account (银行卡号, 账号, 收款账号): a Chinese
# bank's account number carries no Luhn digit, and a card's may be mistyped.
CARD_NAMED = re.compile(r"(?i)(?:(?P<bank>银行卡|銀行卡|储蓄卡|儲蓄卡|借记卡|借記卡|信用卡|账号|帳號|账户|帳戶)|卡号|卡號"
                        r"|(?<![a-z])(?:bank |debit |credit )?card)"
                        r"(?: ?(?:号码|號碼|号|號|number|no\.?|#))?(?: ?(?:是|为|為|係|is))?\W{0,3}"
                        r"(?<![\d+])(?P<number>\d(?:[ -]?\d){12,18})(?![\d-]|[ .]\d)")
IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?:[ -]?[A-Za-z0-9]{4}){2,7}(?:[ -]?[A-Za-z0-9]{1,3})?(?![A-Za-z0-9])")
# Taiwan's mobiles (09xx-xxx-xxx) and identity numbers (a letter, 1 or 2 for the holder's sex, or 8 or 9 for a
# resident certificate, seven digits and a checksum), and Hong Kong's identity card numbers as they are written,
# check digit in brackets: A123456(3).
TW_MOBILE = re.compile(r"(?<![\d+])09\d{2}(?:[ .-]?\d{3}){2}(?!\d)")
TW_ID = re.compile(r"(?<![A-Za-z0-9])[A-Z][1289]\d{8}(?![A-Za-z0-9])")
HK_ID = re.compile(r"(?<![A-Za-z0-9])[A-Z]{1,2}\d{6} ?\([0-9A]\)")
# And written without the brackets (A1234563), as forms and Hong Kong customers often do, after a word for an
# identity card only, if its check digit is right: an order number looks the same.
HK_ID_NAMED = re.compile(r"(?i)(?:身份证|身份證|身分證|(?<![a-z])(?:hkid|hk id|id card|identity card))"
                         r"(?: ?(?:号码|號碼|号|號|number|no\.?|#))?(?: ?(?:是|为|為|係|is))?\W{0,3}"
                         r"(?<![A-Za-z0-9])([A-Z]{1,2}\d{6}[0-9A])(?![A-Za-z0-9])")
# With China's country code as customers write it: +86, 0086, (+86), or 86 without its "+" (8613812345678); in the
# usual groups, 3 4 4, or joined by dashes in the others customers write, 4 3 4, 3 3 5, 4 4 3 (in spaces, these are as
# likely amounts: 1500 300 2000).
CN_MOBILE = re.compile(r"(?<![\d+])(?:(?:\+|00)?86[ -]?|\(\+?86\) ?)?1[3-9]\d"
                       r"(?:(?:[ .-]?\d{4}){2}|\d-\d{3}-\d{4}|-\d{3}-\d{5}|\d-\d{4}-\d{3})(?!\d)")
# And digit by digit, each apart, as customers write one to keep it from a platform's filter: 1 3 8 1 2 3 4 5 6 7 8,
# 1-3-8-1-2-3-4-5-6-7-8 (eleven single digits from 13 to 19 are no list of amounts).
CN_SPACED_MOBILE = re.compile(r"(?<![\d+])(?<!\d[ -])1([ -])[3-9](?:\1\d){9}(?![ -]?\d)")
# And with its first three digits split, the usual 4 4 after them, one separator all through: 13 8 1234 5678,
# 1 38 1234 5678, 1-3-8-1234-5678. Not as part of a longer run of groups.
CN_SPLIT_MOBILE = re.compile(r"(?<![\d+])(?<!\d[ .-])1(?=[3-9]?([ .-]))(?:[3-9]\1\d|\1[3-9]\1?\d)\1\d{4}\1\d{4}"
                             r"(?![ .-]?\d)")
# A Chinese mobile written in Chinese numerals, or in numerals and digits, as customers write one to keep it from
# machines or a voice input gives it: 一三八一二三四五六七八, 幺三八 1234 5678 (幺 for 1, 〇 or 零 for 0, 两 for 2). Digits
# alone are CN_MOBILE's, written as mobiles are (1500 300 2000 is three amounts).
_CHINESE_NUMERALS = "〇零一幺二两兩三四五六七八九"
_NUMERALS = f"0-9{_CHINESE_NUMERALS}"
CN_NUMERAL_MOBILE = re.compile(rf"(?<![{_NUMERALS}])[1一幺][3-9三四五六七八九](?:[ -]?[{_NUMERALS}]){{9}}(?![{_NUMERALS}])")
# 010-62345678, (0755) 88889999, and 010 62345678 with a real area code's shape, the number whole or
# as 4 4 (021-6234-5678, 0755 8667 8699), an extension after a dash (010-62345678-8001); written whole
# (01062345678) only after a word for a phone, since order numbers look the same; so are Hong Kong's
# and Macau's eight digits (電話 9123 4567, whatsapp 61234567).
_CN_AREA = r"0(?:10|2\d|[3-9]\d{2})"
CN_LANDLINE = re.compile(rf"(?<![\d+-])(?:\(0\d{{2,3}}\) ?|0\d{{2,3}}-|{_CN_AREA} )"
                         r"(?:[2-9]\d{6,7}|[2-9]\d{3}[ -]\d{4})(?=-\d{1,5}(?![\d-])|[^\d-]|$)")
# The words for a phone and what customers write between them and the number: 电话号码是…, 手提係… (Hong Kong's
# Cantonese: 手提 for a mobile, 係 for 是), 电话改成…, 联系方式：…, 拨打…, call me at, ring you on, text me, phone to, my number is, contact
# number: (not "number" alone, which order numbers have), a phone's emoji (📱 9123 4567, ☎️: 2123 4567), and the English
# verb before 我 as Hong Kong's customers mix them (WhatsApp我 9123 4567, call我 6123 4567).
_PHONE_WORD = (r"(?<![A-Za-z])(?:电话|電話|座机|座機|固话|固話|手机|手機|手提|联系方式|聯繫方式|聯絡方式|拨打|撥打|致电|致電"
               r"|tel|telephone|phone|mobile|mob|cell|whatsapp|call|ring|text(?= (?:me|us)\b)|📱|📞|☎"
               r"|(?:my|contact|new|home|work) number)"
               r"(?: ?(?:号码|號碼|号|號|number|no\.?))?"
               r"(?: ?(?:是|為|为|係|改成|改为|改為|换成|換成|变更为|變更為|is|was|to|at|on|(?:me|you|us|him|her|我)(?: at| on)?))?")
# After that word, any national number too: 9 to 15 digits, whole or in groups (4155552671, 07911 123456,
# 0412 345 678), but not a date, a "+" number (INTL_PHONE's) or the start of a longer run of groups.
PHONE_NAMED = re.compile(rf"(?i)(?<!\[){_PHONE_WORD}\W{{0,3}}(?<![+\d])(?!\d{{4}}[-./]\d{{1,2}}[-./]\d{{1,2}}(?!\d))"
                         r"(\d(?:[ .-]?\d){8,14}|[2-9]\d{3}[ -]?\d{4})(?![\d-]|[ .]\d)")
# And written in Chinese numerals, or numerals and digits, after that word: Hong Kong's eight digits (手提：九一二三四五六七)
# as a mainland mobile is (CN_NUMERAL_MOBILE) anywhere.
PHONE_NAMED_NUMERALS = re.compile(rf"(?i)(?<!\[){_PHONE_WORD}\W{{0,3}}(?<![{_NUMERALS}])"
                                  rf"([{_NUMERALS}](?:[ -]?[{_NUMERALS}]){{7,14}})(?![{_NUMERALS}])")
# A "+", then digit groups joined by one separator each ("/" with spaces or not), a group in brackets
# glued on or not: +44 (0)20 7946 0958, +49 152 / 3472252. One way only to read each text, so that no
# run of digits makes it try every way of splitting them. The country code may be in brackets, as Hong Kong's
# customers and forms write it: (+852) 9123 4567, +(852) 9123-4567, (+852)-9123-4567.
_INTL_GROUPS = r"(?:(?:[ .-]| ?/ ?)?\(\d{1,4}\)(?: ?\d+)?|(?:[ .-]| ?/ ?)\d+){0,10}"
INTL_PHONE = re.compile(r"(?<![A-Za-z0-9_+])(?:\+\d+|\(\+\d{1,4}\)[ -]?\d+|\+\(\d{1,4}\)[ -]?\d+)" + _INTL_GROUPS)
# The same dialled from abroad with 00 for the "+" (0044 20 7946 0958, 00 49 30 901820), read as INTL_PHONE's
# are but kept only as a number its country gives out: order numbers start with zeros too (00123842). The match
# is its first group, the groups after it looked ahead at (group 1), so that each group of 00 starts a reading:
# a number written after an order number (0012 0044 20 7946 0958), or after another one, is read on its own.
DIALLED_PHONE = re.compile(r"(?<![\d+.-])00 ?[1-9]\d*(?=(" + _INTL_GROUPS + "))")
# And after its country code in brackets without the "+", as Hong Kong's customers write it: (852) 9123 4567, read
# so and kept only as a number that country gives out: (2) 1234 5678 and (123) 4567 8901 are no country's.
BRACKETED_CODE_PHONE = re.compile(r"(?<![A-Za-z0-9_(+.-])\([1-9]\d{0,2}\)(?=([ -]?\d+" + _INTL_GROUPS + "))")
# And after Hong Kong's or Macau's country code without its "+" or brackets, in groups as their customers write it
# (852-9123-4567, 852 9123 4567, 853 6612-3456), or China's before a landline's area code without its trunk 0
# (86-10-62345678, 86 21 6234 5678, 86-755-88889999), kept only as a number that country gives out: 852 1234 5678
# is none. Written whole (85291234567) it reads as an order number. (China's mobiles after 86 are CN_MOBILE's.)
BARE_CODE_PHONE = re.compile(r"(?<![\d+.-])(?:85[23][ -]\d{4}[ -]?\d{4}"
                             r"|86([ -])(?:10|2\d|[3-9]\d{2})\1[2-9]\d{3}[ -]?\d{3,4})"
                             r"(?:(?=-\d{1,5}(?![\d-]))|(?!\d|[ .-]\d))")  # an extension after a dash is :data:`EXTENSION`'s
# (555) 010-0199, 555-010-0199, 555.010.0199 and, from a real area code and exchange (2 to 9), 415/555-2671.
NANP_PHONE = re.compile(r"(?<!\d)(?:\(\d{3}\) ?|\d{3}[-. ]|[2-9]\d{2} ?/ ?(?=[2-9]))\d{3}[-. ]\d{4}(?!\d)")
# A UK number as written at home, with its trunk 0, in groups (07911 123456, 0161 496 0000, 020-7946-0958):
# one that phonenumbers finds valid, or a mobile's 07 and eleven digits. Written whole (07911123456) it reads
# as an order number, unless after a word for a phone.
UK_PHONE = re.compile(r"(?<![\d+.-])0\d{2,4}(?:[ .-]\d{3,6}){1,2}(?!\d|[ .-]\d)")
# A WhatsApp link's number, written without its "+": wa.me/447911123456.
LINK_PHONE = re.compile(r"(?i)(?<=wa\.me/)\d{7,15}(?!\d)")
# An IP address, which the GDPR counts as personal data and customers paste from a hosting panel or an error page: four
# numbers of 0 to 255 joined by dots (203.0.113.45, not a date's three parts nor 10.0.19045.2965), or IPv6's hex groups
# (2001:db8::8a2e:370:7334, ::ffff:198.51.100.7) where Python's ipaddress reads them as one, so that a time (10:30:45)
# or a MAC address is not, and with a digit, as a word of hex letters (cafe::babe) is no one's.
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
IPV4 = re.compile(rf"(?<![A-Za-z0-9_.]){_OCTET}(?:\.{_OCTET}){{3}}(?![0-9]|\.[0-9])")
IPV6 = re.compile(r"(?<![0-9A-Za-z_:.])[0-9A-Fa-f:]{2,39}(?:\.[0-9]{1,3}){0,3}(?![0-9A-Za-z_:]|\.[0-9])")
# What a dotted quad that is no address follows: a version (v1.2.3.4, version 2.0.1.3, 版本 1.0.0.1).
_VERSION = re.compile(r"(?i)(?:\bv|\bver\.?|version|build|firmware|版本|固件)\s*[:：]?\s*$")

# More numbers written straight after one already redacted, each joined by "/", 、, 或(者), 和, 及, Hong Kong's 同埋, "or"
# or "and", as customers list a mobile and a landline (電話 9123 4567/9876 5432, +852 9123 4567 同埋 6123 4567): of the
# shapes PHONE_NAMED takes.
_NEXT_NUMBER = (r" ?(?:/|、|或者?|同埋|和|及|or|and) ?(?<![+\d])(\d(?:[ .-]?\d){8,14}|[2-9]\d{3}[ -]?\d{4})(?![\d-]|[ .]\d)")
NEXT_PHONE = re.compile(rf"(?<=\[PHONE\])(?:{_NEXT_NUMBER})+")
_NEXT_ONE = re.compile(_NEXT_NUMBER)

_CN_ID_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
_CN_ID_CHECK = "10X98765432"
_CN_PROVINCES = {11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46, 50, 51, 52, 53, 54,
                 61, 62, 63, 64, 65, 71, 81, 82, 83, 91}
# The card schemes' issuer prefixes and the lengths their numbers have (Visa, Mastercard, Amex,
# Discover, JCB, UnionPay, Diners): a random 14-digit order number passes Luhn one time in ten.
_CARD_SCHEMES = [(re.compile(prefix), lengths) for prefix, lengths in [
    (r"4", {13, 16, 19}), (r"5[1-5]|2[2-7]", {16}), (r"3[47]", {15}), (r"6011|65|64[4-9]", set(range(16, 20))),
    (r"35", set(range(16, 20))), (r"62", set(range(16, 20))), (r"30[0-5]|36|38", set(range(14, 20)))]]
# How card numbers are written: whole, in fours (the last group shorter), as Amex's 4-6-5 and Diners' 4-6-4,
# or as UnionPay's 6 and the rest.
_CARD_GROUPINGS = re.compile(r"\d{13,19}|(?:\d{4},){2,4}\d{1,4}|\d{4},\d{6},\d{4,5}|\d{6},\d{10,13}")


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def card_shaped(digits: str) -> bool:
    """Whether a run of digits has a card scheme's prefix and length."""
    return any(prefix.match(digits) and len(digits) in lengths for prefix, lengths in _CARD_SCHEMES)


# The two digits each letter of a Taiwanese identity number stands for (W to Z, I and O, added later, out of order).
_TW_LETTERS = dict(zip("ABCDEFGHJKLMNPQRSTUVXYWZIO", range(10, 36)))


def tw_id_valid(number: str) -> bool:
    """A Taiwanese identity number's checksum: a product code of the same shape passes it one time in ten."""
    value = _TW_LETTERS[number[0]]
    total = value // 10 + value % 10 * 9 + sum(int(d) * w for d, w in zip(number[1:], (8, 7, 6, 5, 4, 3, 2, 1, 1)))
    return total % 10 == 0


def hk_id_valid(number: str) -> bool:
    """A Hong Kong identity card number's check digit (its last; A for 10): eight characters, one letter
    padded with a space, weighted 9 to 2, and the check digit make a multiple of 11."""
    body, check = number[:-1].upper().rjust(8), number[-1].upper()
    total = sum((36 if c == " " else int(c, 36)) * w for c, w in zip(body, range(9, 1, -1)))
    return (total + int(check, 11)) % 11 == 0


def _cn_holder_valid(number: str) -> bool:
    """Whether an 18-digit resident identity number starts with a province and a real birth date since 1900."""
    try:
        born = datetime.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return False
    return int(number[:2]) in _CN_PROVINCES and datetime.date(1900, 1, 1) <= born <= datetime.date.today()


def cn_id_valid(number: str) -> bool:
    """A Chinese resident identity number (GB 11643): a province, a real birth date since 1900, and the
    checksum; an 18-digit order number passes the checksum alone one time in eleven."""
    number = re.sub(r"[ -]", "", number)
    if not _cn_holder_valid(number):
        return False
    total = sum(int(d) * w for d, w in zip(number[:17], _CN_ID_WEIGHTS))
    return _CN_ID_CHECK[total % 11] == number[17].upper()


def cn_named_id_valid(number: str) -> bool:
    """A resident identity number after its name: a province and a real birth date, in the 1900s (written YYMMDD) for a
    15-digit one."""
    number = re.sub(r"[ -]", "", number)
    return _cn_holder_valid(f"{number[:6]}19{number[6:]}" if len(number) == 15 else number)


# The IBAN length of each country that has IBANs (the SWIFT registry): a courier's tracking number
# (SF8046055490315) has letters, digits and one chance in 97 of passing the check, but no country.
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29, "BY": 28,
    "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
    "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20,
    "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15,
    "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19,
    "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}


def iban_valid(text: str) -> bool:
    """An IBAN (ISO 13616): its country's length, and moved its first four characters to the end, read
    as a number with letters as 10 to 35, it leaves 1 modulo 97."""
    code = re.sub(r"[ -]", "", text).upper()
    return (_IBAN_LENGTHS.get(code[:2]) == len(code)
            and int("".join(str(int(ch, 36)) for ch in code[4:] + code[:4])) % 97 == 1)


Span = tuple[int, int]
Find = Callable[[re.Match[str]], list[Span]]


def _cards(match: re.Match[str]) -> list[Span]:
    """Where in a run of digit groups the card numbers are: the runs of its groups that are one, so
    that an expiry, a CVV or a date written next to a card (``4111 … 1111 12/25``) does not hide it. A run
    that starts the whole run and is written in a scheme's groups with its prefix and length is one even if it
    fails the Luhn check (a digit mistyped, ``6212 2617 0201 2345 678``): left as it is, all but one of its digits
    would be shown, and a phone number read in its last groups would leave the first ones standing alone."""
    text = match.group(0)
    groups = [group.span() for group in re.finditer(r"\d+", text)]
    joiners = [""] + [text[a[1]:b[0]] for a, b in zip(groups, groups[1:])]  # joiners[k]: before group k
    cards = []
    for i in range(len(groups)):
        # A card is written with one separator all through, and not glued by another to what is before
        # it: in "437-896-2639 5170 5283 7554 1573", "2639 5170 5283 7554" is no card's run.
        if joiners[i].strip() and i + 1 < len(groups) and joiners[i] != joiners[i + 1]:
            continue
        written = ""  # groups i to j, joined by commas
        for j in range(i, len(groups)):
            if i < j - 1 and joiners[j] != joiners[i + 1]:
                break
            written += ("," if written else "") + text[slice(*groups[j])]
            digits = len(written) - (j - i)
            if digits > 19:  # no card is longer
                break
            odd = digits >= 13 and not _CARD_GROUPINGS.fullmatch(written)
            # A run grouped otherwise (41111111 11111111, 622202 1234567890128) must start at the first digit,
            # or the tail of an order number (819-2544734-6242047) would pass, and in groups of four or more,
            # or an amount and a date (40.02 2023-11-20 4111…) would make a "card" one time in ten.
            number = written.replace(",", "")
            if (digits >= 13 and (not odd or i == 0 and min(b - a for a, b in groups[i:j + 1]) >= 4)
                    and card_shaped(number) and (luhn_valid(number) or i == 0 < j and not odd)):
                cards.append((odd, not luhn_valid(number), i - j, i, j))
    # Those grouped as cards are first, then those that pass Luhn, then the most groups, then leftmost.
    found: list[Span] = []
    taken: set[int] = set()
    for *_, i, j in sorted(cards):
        if taken.isdisjoint(range(i, j + 1)):
            found.append((match.start() + groups[i][0], match.start() + groups[j][1]))
            taken.update(range(i, j + 1))
    return sorted(found)


def _phone(match: re.Match[str]) -> list[Span]:
    """The international number that ``match`` starts with, up to what starts something else: a date or a
    time (``+44 20 7946 0958 10:30``), a group marked otherwise than the number's own groups are besides
    spaces (``+82 10-2887-9793 765.99``, ``+61 437 825 244 641.10``; ``+55 11 92999-8698`` is one number),
    or in brackets after the first (a second number, ``(695) 587-6879``). Of that, the groups before a
    small quantity (``12件``, ``31%``) where they make a valid number, else the most of its groups that
    make a number of a length its country's numbers have, so that an order number after it neither hides
    it nor goes with it; failing that (a country the metadata does not know, a digit mistyped), all of it
    short of the quantity if it is as long as phone numbers are."""
    return _phone_at(match.string, match.start(), match.group(0))


def _phone_at(string: str, at: int, text: str) -> list[Span]:
    """:func:`_phone` of the number ``text``, written at ``at`` of ``string``."""
    groups = list(re.finditer(r"\d+", text))
    marks = [_mark(text[a.end():b.start()]) for a, b in zip(groups, groups[1:])] + [""]
    ends, mark = [groups[0].end()], ""  # the number's mark between groups besides spaces ("-", "."), once seen
    quantity = None  # the first group that reads as a quantity
    for k, group in enumerate(groups[1:], start=1):
        after = string[at + group.end():at + group.end() + 1]
        if (k >= 2 and "(" in text[groups[k - 1].end():group.start()]
                or DATE_OR_TIME.match(string, at + group.start())
                or mark and (marks[k - 1] or marks[k]) not in ("", mark)):
            break
        if not mark and marks[k - 1] and k >= 3 and _possible(text[:groups[k - 2].end()], valid=True):
            ends.pop()  # a number, then another marked otherwise, its first group before the mark
            break
        mark = mark or marks[k - 1]
        ends.append(group.end())
        if quantity is None and len(group.group()) <= 3 and (after in ("%", "+") or _UNIT.match(after)):
            quantity = len(ends) - 1
    if quantity and _possible(text[:ends[quantity - 1]], valid=True):  # 12件 after +886 963 692 887
        return [(at, at + ends[quantity - 1])]
    for end in reversed(ends):
        if _possible(text[:end]):
            return [(at, at + end)]
    kept = text[:(ends[:quantity] if quantity else ends)[-1]]
    return [(at, at + len(kept))] if 8 <= sum(ch.isdigit() for ch in kept) <= 15 else []


@functools.lru_cache(maxsize=4096)  # a long message of the same groups asks the same of each of them
def _possible(number: str, valid: bool = False) -> bool:
    """Whether a + number is of a length its country's numbers have or, asked for ``valid``, also of a range
    its country gives out. Where a shorter reading drops digits only on that evidence, a number is left
    whole rather than partly shown. A number dialled with 00, or after its country code in brackets, is read as
    the + number it is."""
    code = re.match(r"\((\d+)\)", number)  # (852) 9123 4567: the country code in brackets, without its "+"
    if number.startswith("00"):
        number = "+" + number[2:].lstrip()
    elif code:
        number = f"+{code[1]} {number[code.end():]}"
    if not 6 <= sum(ch.isdigit() for ch in number) <= 21:  # no country's numbers are so short or long (with a "(0)")
        return False
    try:
        parsed = phonenumbers.parse(number)
    except phonenumbers.NumberParseException:  # no such country code, or too long
        return False
    if code and parsed.country_code != int(code[1]):  # (123) 4567 8901 read as +1 234 567 8901
        return False
    if valid:
        return phonenumbers.is_valid_number(parsed)
    return phonenumbers.is_possible_number_with_reason(parsed) == phonenumbers.ValidationResult.IS_POSSIBLE


def _mark(joiner: str) -> str:
    """What besides spaces joins two digit groups ("-", ".", "/"), or "" for spaces and brackets."""
    return "" if "(" in joiner or ")" in joiner else joiner.strip()


# What a quantity's number is written with (5pm, 12kg, 12件, 3个, 99元), but not an extension (x123, ext 123).
_CJK_UNITS = "件个只台套箱盒瓶元块份次张本支双条袋包天号点分秒月年日斤克米码楼层折期"
_UNIT = re.compile(rf"[A-DF-WYZa-df-wyz]|[{_CJK_UNITS}]")
# An extension written straight after a phone number: a desk's own line, which with the number names its person
# (010-62345678-8001, +1 415 555 0100 ext. 23, (415) 555-0100 x23, 010-62345678转8001, 分机号：8001, "(ext 23)"):
# taken with the number into its [PHONE]. Not an amount or a count (转2件, x 1.5, x 2 pcs).
EXTENSION = re.compile(r"(?i)-\d{1,5}(?![\d-]|[.,]\d)"
                       r"|(?: ?[,，(（])? ?(?:(?:ext(?:ension|n)?\.?|(?:转|轉)(?:分机|分機)?|分机|分機|内线|內線)"
                       r"(?: ?(?:no\.?|号码|號碼|号|號))?(?: ?[:：#])? ?\d{1,6}"
                       r"|x ?\d{2,6}(?! ?(?:pcs?|pieces?|items?|units?|boxes|sets?|packs?|times)\b))"
                       rf"(?![\d{_CJK_UNITS}]|[.,]\d)(?: ?[)）])?")


# 2023-11-20, 2023/11/20, 20.11.2023, 11/20/2023, 10:30, 9:00, 14h30, 2023年: no phone number goes on into one.
DATE_OR_TIME = re.compile(r"(?:19|20)\d\d([-/.])[01]?\d\1[0-3]?\d(?!\d)|[0-3]?\d([-/.])[0-3]?\d\2(?:19|20)\d\d(?!\d)"
                          r"|[0-2]?\d[:h][0-5]\d(?!\d)|(?:19|20)\d\d年")


def _iban(match: re.Match[str]) -> list[Span]:
    """The IBAN that ``match`` starts with: its groups up to the length its country's have, since a word
    written after it (``ES91 2100 0418 4502 0005 1332 and``) reads as one more group."""
    text = match.group(0)
    for end in sorted((group.end() for group in re.finditer(r"[A-Za-z0-9]+", text)), reverse=True):
        if iban_valid(text[:end]):
            return [(match.start(), match.start() + end)]
    return []


def _email(match: re.Match[str]) -> list[Span]:
    """The address, without the Chinese or Japanese words written straight before an ASCII name
    (请发到zhang@163.com: zhang@163.com). A name written in Chinese takes the whole run of letters
    before the "@" with it, since nothing says where it starts (请发到李四@… loses 请发到 too): a few
    words lost from one message rather than a customer's name kept. An apostrophe may stand in a name (o'brien@…), but
    those before it are the quote the address stands in ('jane@x.com': the quote stays)."""
    local = match.group(0).partition("@")[0]
    ascii_name_at = len(local.rstrip(string.ascii_letters + string.digits + "._%+-"))
    if 0 < ascii_name_at < len(local) and _unspaced_script(local[ascii_name_at - 1]):
        return [(match.start() + ascii_name_at, match.end())]
    quoted = len(local) - len(local.lstrip("'"))
    return [(match.start() + quoted, match.end())] if quoted < len(local) else []


def _spelt_email(match: re.Match[str]) -> list[Span]:
    """The address :data:`SPELT_EMAIL` found, if it is one: its "@" in brackets or as 艾特, or a plain "at" after a
    word that may name a mailbox ("email me at gmail dot com" names none) and before a domain with a dot spelt out
    (zhangsan at 163 dot com) or of free mail (zhangsan at qq.com); and no domain starts with a word such as "that"."""
    domain = re.split(rf"(?i)[.。]|{_SPELT_DOT}", match["domain"])[0].lower()
    if domain in _NOT_DOMAINS:
        return []
    if match["at"].lower() != " at ":
        return [match.span()]
    mailbox = match.string[match.start():match.start("at")].lower()
    spelt = re.search(rf"(?i){_SPELT_DOT}", match["domain"])
    return [match.span()] if (spelt or domain in _MAIL_DOMAINS) and mailbox not in _NOT_MAILBOXES else []


def _unspaced_script(ch: str) -> bool:
    return unicodedata.name(ch, "").startswith(("CJK", "HIRAGANA", "KATAKANA"))


def _whole(match: re.Match[str]) -> list[Span]:
    return [match.span()]


def _named(match: re.Match[str]) -> list[Span]:
    """The number after the word that names it (``电话01062345678``: the number alone)."""
    return [match.span(1)]


def _landline(match: re.Match[str]) -> list[Span]:
    """The landline, unless it is written with spaces only inside a longer run of digit groups, after one of
    three digits or more (a USPS number, 9400 7233 0408 8121 2222 53); beside a number on one side only,
    or after a short one, it is the customer's (``订单 4332755 010 46450640``, ``size 38 020 28460811 10/04``)."""
    if not re.fullmatch(r"[\d ]+", match.group(0)):  # 010-…, (010) …: a landline's own writing
        return [match.span()]
    before, after = match.string[max(match.start() - 4, 0):match.start()], match.string[match.end():match.end() + 2]
    inside = before[:3].isdigit() and before[3:] == " " and after[:1] == " " and after[1:].isdigit()
    return [] if inside else [match.span()]


def _dialled(match: re.Match[str]) -> list[Span]:
    """The number dialled with 00, or after its country code in brackets without the "+", that ``match`` starts,
    read with the groups after it as :func:`_phone` reads a + number's, if it is one its country gives out."""
    spans = _phone_at(match.string, match.start(), match.group(0) + match.group(1))
    return [(start, end) for start, end in spans if _possible(match.string[start:end], valid=True)]


def _uk(match: re.Match[str]) -> list[Span]:
    """The UK number in groups, if it is one (:data:`UK_PHONE`): 0123 456 789 is an order number's shape too."""
    digits = re.sub(r"\D", "", match.group(0))
    if len(digits) not in (10, 11):
        return []
    if re.fullmatch(r"07[1-9]\d{8}", digits):  # a mobile; 07700 900xxx, kept for examples, is one too
        return [match.span()]
    return [match.span()] if phonenumbers.is_valid_number(phonenumbers.parse(digits, "GB")) else []


def _listed(match: re.Match[str]) -> list[Span]:
    """Each number of the list :data:`NEXT_PHONE` found, without what joins them."""
    return [one.span(1) for one in _NEXT_ONE.finditer(match.string, match.start(), match.end())]


def account_id(match: re.Match[str]) -> list[Span]:
    """The messenger ID, Alipay account or QQ number :data:`ACCOUNT` found, if it is one: a handle of letters alone
    only after a word that says it is one (微信号 Zhangwei, 我的微信是 zhangwei) or after 加微信 (加我微信 zhangwei),
    since after the name alone it is as likely an English word ("WeChat support", 微信 account 被封了). After a colon alone a
    capitalised word is a menu's ("In WeChat: Settings"), and after "is" alone a word is what the customer says
    of WeChat ("my wechat is broken"), not an ID. A number after "line" and a colon alone is a line's ("order line:
    10023")."""
    marker, handle = match.groups()
    said = (marker or "").strip().lower()
    added = _ADD_ME.search(match.string, max(0, match.start() - 6), match.start())
    if handle.isdigit() and said in (":", "：") and match.group(0)[:4].lower() == "line" and not added:
        return []
    if re.search(r"[-_0-9]", handle) or added:
        return [match.span(2)]
    if handle.lower() in _NOT_NAMES:  # "wechat id please", "my wechat id changed": a word, no handle
        return []
    return [match.span(2)] if said and said != "is" and not (said in ":：" and handle.istitle()) else []


def _ipv4(match: re.Match[str]) -> list[Span]:
    """The IPv4 address, unless it is a version number (:data:`_VERSION` before it)."""
    return [] if _VERSION.search(match.string, max(0, match.start() - 12), match.start()) else [match.span()]


def _ipv6_valid(text: str) -> bool:
    """Whether a run of hex digits and colons is an IPv6 address (:data:`IPV6`)."""
    if text.count(":") < 2 or not any(ch.isdigit() for ch in text):
        return False
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _when(valid: Callable[[str], bool]) -> Find:
    return lambda match: [match.span()] if valid(match.group(0)) else []


def _with_extension(find: Find) -> Find:
    """``find``'s phone numbers, each with the extension written after it (:data:`EXTENSION`)."""
    def found(match: re.Match[str]) -> list[Span]:
        return [(start, extension.end() if (extension := EXTENSION.match(match.string, end)) else end)
                for start, end in find(match)]
    return found


def _named_card(match: re.Match[str]) -> list[Span]:
    """The number :data:`CARD_NAMED` found after a word for a card or a bank account, if it is one: Luhn-valid; or
    of 16 to 19 digits failing Luhn, after a word for a bank's card or account, or with a card scheme's prefix and
    length after 卡号 or "card" alone (``卡号6222021234567890123``, a digit mistyped), which name a shop's own cards
    too (会员卡号), whose numbers are no scheme's."""
    digits = re.sub(r"\D", "", match["number"])
    if luhn_valid(digits) or len(digits) >= 16 and (match["bank"] or card_shaped(digits)):
        return [match.span("number")]
    return []


def _named_when(valid: Callable[[str], bool]) -> Find:
    """The number after the word that names it (:func:`_named`), if ``valid``."""
    return lambda match: _named(match) if valid(match.group(1)) else []


RULES: list[tuple[re.Pattern[str], str, Find]] = [
    (EMAIL, "[EMAIL]", _email),
    (SPELT_EMAIL, "[EMAIL]", _spelt_email),
    (IPV6, "[IP]", _when(_ipv6_valid)),
    (IPV4, "[IP]", _ipv4),
    (CN_ID, "[ID]", _when(cn_id_valid)),
    (CN_NAMED_ID, "[ID]", _named_when(cn_named_id_valid)),  # before cards: 34… and 37… have Amex's length
    (TW_ID, "[ID]", _when(tw_id_valid)),
    (HK_ID, "[ID]", _whole),
    (HK_ID_NAMED, "[ID]", _named_when(hk_id_valid)),
    (SSN, "[ID]", _whole),
    (SSN_NAMED, "[ID]", _named),
    (PASSPORT, "[ID]", _named),
    (BIRTH_DATE, "[DOB]", _named),
    (QQ, "[QQ]", _named),
    (IBAN, "[IBAN]", _iban),  # before cards: sixteen of its digits may pass Luhn
    (CARD, "[CARD]", _cards),
    (CARD_NAMED, "[CARD]", _named_card),
    (CN_MOBILE, "[PHONE]", _whole),
    (CN_SPACED_MOBILE, "[PHONE]", _whole),
    (CN_SPLIT_MOBILE, "[PHONE]", _whole),
    (CN_NUMERAL_MOBILE, "[PHONE]", _when(lambda number: bool(re.search(f"[{_CHINESE_NUMERALS}]", number)))),
    (TW_MOBILE, "[PHONE]", _whole),
    (CN_LANDLINE, "[PHONE]", _landline),
    (PHONE_NAMED, "[PHONE]", _named),
    (PHONE_NAMED_NUMERALS, "[PHONE]", _named_when(lambda number: bool(re.search(f"[{_CHINESE_NUMERALS}]", number)))),
    (INTL_PHONE, "[PHONE]", _phone),
    (DIALLED_PHONE, "[PHONE]", _dialled),
    (BRACKETED_CODE_PHONE, "[PHONE]", _dialled),
    (UK_PHONE, "[PHONE]", _uk),
    (NANP_PHONE, "[PHONE]", _whole),
    (LINK_PHONE, "[PHONE]", _whole),
    (BARE_CODE_PHONE, "[PHONE]", _when(lambda number: _possible(f"+{number}", valid=True))),
    (NEXT_PHONE, "[PHONE]", _listed),  # after every other phone number
    (WXID, "[ID]", _whole),
    (ACCOUNT, "[ID]", account_id),  # after the phone numbers: "微信同号 13812345678" is one
]
# A phone number's extension goes with it, whichever rule found the number.
RULES = [(pattern, placeholder, _with_extension(find) if placeholder == "[PHONE]" else find)
         for pattern, placeholder, find in RULES]
PLACEHOLDERS = frozenset(placeholder for _, placeholder, _ in RULES)


# What a customer writes before their own name: "my name is John Smith", "我叫张伟", "我的名字是王芳", "姓名：李娜".
# Only what leaves the store for training loses the name (:func:`redact_names`): the store keeps it for the agents
# who answer, and the check that keeps an answer repeating it out of the index (dialogues/export.py) reads it.
# And the recipient's or contact's name, as customers paste a delivery's details ("收货人：张伟，手机：…，地址：…",
# "recipient: John Smith"), the name theirs or the one the parcel goes to.
# And the name a refund goes to, as customers give a bank account for one ("收款人：张三，开户行：…", 持卡人, 开户名,
# "cardholder: John Smith"); not a login's (用户名).
# And a form's field, as customers fill one in a message: 名字：张伟, "Name: John Smith", "full name: …" (not another
# thing's name, "product name: …").
# And the surname a customer gives as one (我姓张, 免贵姓王, 本人姓欧阳: :data:`_SURNAMED`), and the name they give after it
# (我姓张，叫张伟); not 姓名 or 姓氏.
_SURNAME = r"(?:我|本人|免[贵貴])姓 *(?![名氏])([\u4e00-\u9fff]{1,2})"
_SURNAMED = re.compile(_SURNAME + r"(?=[,，.。!！?？ ]|$|(?:名字|名)?叫)")
PERSON_FIELDS = r"(?:收件人|收货人|收貨人|联系人|聯繫人|聯絡人|收款人|持卡人|开户名|開戶名|(?<!用)户名|(?<!用)戶名)"
_NAMED_BY = re.compile(r"(?i)(?:(?<![a-z])my name(?: is|'s| ?[:：])|我叫|我的名字(?:是|叫|係)|名字(?:是|叫|係|[:：]| is)"
                       r"|姓名(?:是|係|[:：])"
                       rf"|{_SURNAME}[,，]? *(?:名字|名)?叫"
                       r"|(?<![a-z])(?<![a-z] )(?:full )?name ?(?:[:：]|是|係)"  # and in a mixed line: 我的name是…
                       r"|我(?:個|个|嘅)名字?(?:是|叫|係)"  # and Hong Kong's Cantonese: 我個名叫陳大文, 我嘅名係陳大文
                       rf"|{PERSON_FIELDS}(?:姓名|名字)?(?:是|为|為|係|改为|改成|改為|[:：])"
                       r"|(?<![a-z])(?:(?:recipient|addressee|payee|card ?holder|account holder)(?:'s)?(?: name)?|contact name)"
                       r"(?: is| ?[:：])) *")
# And a field's name and a space, as a form is copied or a delivery's details typed without colons (姓名 李娜, 收货人 张伟):
# the name after it from a common surname only, as after 我是, since "姓名 电话 地址" lists fields.
_NAMED_SPACED = re.compile(rf"(?:姓名|名字|{PERSON_FIELDS})(?:姓名|名字)? +")
# And what a name may follow, read for that check only: "I'm John", "this is Maria Lopez", "我是张伟".
_INTRODUCED = regex.compile(r"(?<![A-Za-z])(?:[Ii]'m|[Ii] am|[Tt]his is) +(?=\p{Lu})|我[是係] *(?=[\u4e00-\u9fff])")
# Names in the alphabets customers write them in: Müller, José Núñez, Ólafur, O'Brien, Anna-Lena (an ASCII-only
# name cut "Hans Müller" to "Hans M" and left "Ólafur" alone).
_NAME_LETTER = r"[\p{Latin}\p{Greek}\p{Cyrillic}\p{M}]"
_NAME_WORD = rf"{_NAME_LETTER}[{_NAME_LETTER[1:-1]}'’-]*"
_NAME_WORDS = regex.compile(rf"{_NAME_WORD}(?: {_NAME_WORD}){{0,2}}|[\u4e00-\u9fff]{{2,4}}")
# Words written after "my name is" or "I'm" that are no name ("my name is John and…", "I'm Not happy").
_NOT_NAMES = frozenset("""a about also am an and any are as at be because but by can cannot could did do does for from
get got had has have help here hi hello how i i'm if in is it its just looking me my need no not now of ok okay on or
order our please pls plz really so sorry still sure than thank thanks that the their then there this to trying very
waiting want was we what when where which who why will with would yes you your spelled spelt misspelled misspelt
wrong incorrect correct right missing different changed showing shown listed written printed""".split())
# The fields a form lists after a name, "Name: John Smith Phone: …": "Phone" is the next one's name, not the surname's end.
_FIELDS = frozenset("phone tel telephone mobile cell email e-mail mail address addr order postcode zip city country company"
                    .split())
# A Chinese name is two to four characters; past its second, one of these starts the rest of the sentence
# (我叫张伟想问一下: 张伟; 收件人 张三不在家: 张三).
_AFTER_CHINESE_NAME = frozenset("想要的在我请請订訂买買问問找来來从從是和跟有能可已刚剛就也还還帮幫给給把，係喺嚟不没沒")
# What starts no name after 我是, 我叫 or 收件人是 (我是新用户, 我是想问, 我叫了快递, 收件人是我本人).
_NOT_CHINESE_NAMES = frozenset("新老一个這这那不想来來要在从從用客会會买買卖賣第您你他她它们們本了快人过過错錯写寫改没沒我")
# After 我是 a name is one of the common surnames' (我是张伟), where most words are no name (我是上海的客户, 我是VIP会员).
SURNAMES = frozenset("王李张張刘劉陈陳杨楊黄黃赵趙吴吳周徐孙孫马馬朱胡郭何高林罗羅郑鄭梁谢謝宋唐许許韩韓冯馮邓鄧曹彭曾肖"
                      "萧蕭田董袁潘于蒋蔣蔡余杜叶葉程苏蘇魏吕呂丁任沈姚卢盧姜崔钟鍾谭譚陆陸汪范範金石廖贾賈夏韦韋付方白"
                      "邹鄒孟熊秦邱江尹薛闫閆段雷侯龙龍史陶黎贺賀顾顧毛郝龚龔邵万萬钱錢严嚴覃武戴莫孔向汤湯欧歐")
# Common words that start with a surname's character and name no one, as a delivery's details say when its recipient
# is in (收件人 周末不在: "the recipient is out at weekends"), or an agent greets a customer (您好，谢谢！), and the
# provinces and cities that do.
SURNAME_LIKE_WORDS = regex.compile(
    "周末|周[一二三四五六日天几幾]|马上|馬上|方便|方式|方面|高兴|高興|顾客|顧客|谢谢|謝謝|万一|萬一|于是|任何|任意|白天|夏天"
    "|余额|餘額|金额|金額|付款|付钱|付錢|何时|何時|曾经|曾經|陆续|陸續|许多|許多|严重|嚴重|毛病|程序|董事"
    "|江苏|江蘇|江西|苏州|蘇州|武汉|武漢|郑州|鄭州|石家庄|石家莊|金华|金華")  # and places: 我是江苏人


def _name_at(view: str, start: int, loose: bool) -> Span | None:
    """The name written at ``start`` of ``view``, after a phrase that introduces one: English words up to one
    that is no name (or a lowercase word after a capitalised one), or two to four Chinese characters up to the
    word that starts the rest of the sentence, but none that starts as no name does. ``loose`` (after "I'm",
    "我是") takes fewer: only capitalised English words, and Chinese ones from a common surname."""
    match = _NAME_WORDS.match(view, start)
    if match is None:
        return None
    text = match.group(0)
    if not "\u4e00" <= text[0] <= "\u9fff":
        kept: list[str] = []
        for word in text.split(" "):
            capitals_only = loose or bool(kept) and kept[0][0].isupper()
            if (word.lower() in _NOT_NAMES or capitals_only and not word[0].isupper()
                    or word.lower() in _FIELDS and view.startswith((":", "："), start + len(" ".join([*kept, word])))):
                break
            kept.append(word)
        end = start + len(" ".join(kept))
    else:
        # after 我叫 or 收件人：, a name is given: 周一鸣 is one, where 收件人 周一不在 says when the recipient is out
        if text[0] in _NOT_CHINESE_NAMES or loose and (text[0] not in SURNAMES or SURNAME_LIKE_WORDS.match(text)):
            return None
        end = start + next((i for i in range(2, len(text)) if text[i] in _AFTER_CHINESE_NAME), len(text))
    return (start, end) if end > start else None


# And a name that starts a delivery's details as a shop's app copies them, the phone number straight after it (王小明，
# 13812345678，北京市…): two or three characters from a common surname, where the line or a field starts.
_NAME_BEFORE_PHONE = re.compile(rf"(?m)(?:^|(?<=[\s,，;；:：]))(?!{SURNAME_LIKE_WORDS.pattern})[{''.join(sorted(SURNAMES))}]"
                                r"[\u4e00-\u9fff]{1,2}(?=[,， ]+\[PHONE\])")


def _name_spans(view: str, loose: bool = False) -> list[Span]:
    """Where ``view`` gives the writer's name: after "my name is", 我叫 and the like, a field's name and a space, and
    with ``loose`` also after "I'm", "this is" and 我是; the surname after 我姓; and the name before a phone number
    that starts a delivery's details."""
    cues = [(_NAMED_BY, False), (_NAMED_SPACED, True), *([(_INTRODUCED, True)] if loose else [])]
    return sorted({span for cue, surname_first in cues for match in cue.finditer(view)
                   if (span := _name_at(view, match.end(), loose=surname_first))}
                  | {match.span(1) for match in _SURNAMED.finditer(view)}
                  | {match.span() for match in _NAME_BEFORE_PHONE.finditer(view)})


def given_names(text: str) -> set[str]:
    """The names a customer gave as their own in ``text`` ("my name is John Smith": "John Smith", "John",
    "Smith"; "我叫张伟": "张伟"), so that an answer repeating one is known to be about them."""
    view = nfkc_view(text)[0]
    names = {view[start:end] for start, end in _name_spans(view, loose=True)}
    return {part for name in names for part in {name, *name.split(" ")} if len(part) >= 2}


def redact_names(text: str) -> str:
    """``text`` with the name its writer gave after "my name is", 我叫, 我的名字是 and the like replaced by
    ``[NAME]``: a model learns the sentence, not the customer. Names anywhere else are not recognised."""
    view, origin = nfkc_view(text)
    # a name of four characters may hold the next phrase's start
    return _replaced(text, origin, merged_spans(_name_spans(view)), "[NAME]")


def merged_spans(spans: Sequence[Span]) -> list[Span]:
    """``spans`` in order, each that overlaps the one before joined to it: one placeholder for what two findings
    share, where :func:`_apart` would cut the second's end off."""
    merged: list[Span] = []
    for start, end in sorted(spans):
        if merged and start < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def replace_found(text: str, find: Callable[[str], list[Span]], placeholder: str) -> str:
    """``text`` with the spans ``find`` gives of its NFKC view (full-width digits too) replaced by ``placeholder``,
    the rest as written."""
    view, origin = nfkc_view(text)
    return _replaced(text, origin, _apart(sorted(find(view))), placeholder)


def _apart(spans: list[Span]) -> list[Span]:
    """``spans``, in order, without those that start inside the one before (a number read from two of its
    groups of 00)."""
    kept: list[Span] = []
    for span in spans:
        if not kept or span[0] >= kept[-1][1]:
            kept.append(span)
    return kept


def _replaced(text: str, origin: Sequence[int], spans: list[Span], placeholder: str) -> str:
    """``text`` with the ``spans`` of its view, in order and apart (``origin`` maps them back), replaced by
    ``placeholder``, in one pass: a copy of the text per span took seconds for 100 KB holding thousands."""
    pieces: list[str] = []
    at = 0
    for start, end in spans:
        pieces += [text[at:origin[start]], placeholder]
        at = origin[end - 1] + 1
    return "".join(pieces) + text[at:]


def was_redacted(text: str) -> bool:
    return any(placeholder in text for placeholder in PLACEHOLDERS)


def nfkc_view(text: str) -> tuple[str, Sequence[int]]:
    """``text`` NFKC-normalised character by character, without the characters that show nothing
    (zero-width spaces, joiners, soft hyphens: Unicode's format characters, which a number copied from
    a web page often carries, 138\u200b1234\u200b5678), with each run of white space one space (a tab
    or doubled spaces between a number's groups: 138\t1234\t5678), or one line break if it holds one (a
    number ends with its line: three numbers on three lines are no phone number), and for each character
    of that view the index in ``text`` of the character it came from. Normalising the whole string at
    once could compose characters across positions and lose the map back; the patterns match no
    combining marks, so the two views differ in nothing they look at."""
    if text.isascii() and not _SPACING.search(text):  # most messages: the view is the text
        return text, range(len(text))
    pieces = ["" if unicodedata.category(ch) == "Cf" else "-" if ch in _DASHES else unicodedata.normalize("NFKC", ch)
              for ch in text]
    run = None  # where the current run of white space starts
    for i, piece in enumerate(pieces):
        if piece.isspace():
            if run is None:
                run, pieces[i] = i, " "
            else:
                pieces[i] = ""
            if "\n" in piece:
                pieces[run] = "\n"
        elif piece:
            run = None
    return "".join(pieces), [i for i, piece in enumerate(pieces) for _ in piece]


# Hyphens, dashes and the minus sign, which a word processor or an input method puts between a number's groups
# (138—1234—5678, 010–62345678): read as "-".
_DASHES = frozenset("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58")
_SPACING = re.compile(r"\s\s|[^\S \n]")  # white space that is not one plain space or one line break


def redact(text: str) -> str:
    """``text`` with emails, phone numbers, card, identity, passport and QQ numbers, WeChat IDs, IP addresses and birth dates
    replaced by placeholders."""
    return _redaction(text)[0]


def _redaction(text: str) -> tuple[str, dict[str, set[str]]]:
    """``text`` redacted, and what each placeholder replaced in it."""
    found: dict[str, set[str]] = {}
    view, origin = nfkc_view(text)
    for pattern, placeholder, find in RULES:
        spans = _apart([span for match in pattern.finditer(view) for span in find(match)])
        found.setdefault(placeholder, set()).update(text[origin[start]:origin[end - 1] + 1] for start, end in spans)
        text = _replaced(text, origin, spans, placeholder)
        if spans:  # the next rule reads the text as replaced
            view, origin = nfkc_view(text)
    return text, found


def filled_in(payload: Any, message: str) -> Any:
    """``payload`` (a reply's text, or its buttons, custom payloads or messages) redacted as stored, with each
    placeholder the customer's ``message`` replaced one value of, and that value alone, put back: a reply that
    quoted the customer's own words is shown to them as it was first, from what they send again, not from the
    store. A placeholder the message does not settle (none, or two addresses) stays."""
    values = {placeholder: next(iter(found)) for placeholder, found in _redaction(message)[1].items() if len(found) == 1}
    return _filled(payload, values)


def _filled(payload: Any, values: dict[str, str]) -> Any:
    if isinstance(payload, str):
        for placeholder, value in values.items():
            payload = payload.replace(placeholder, value)
        return payload
    if isinstance(payload, list):
        return [_filled(item, values) for item in payload]
    if isinstance(payload, dict):
        return {key: _filled(value, values) for key, value in payload.items()}
    return payload
