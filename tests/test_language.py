"""Which language a turn is answered in, and the texts a bot keeps in more than one."""

from __future__ import annotations

import pytest

from bot.language import chinese_script, in_script, say, turn_language


@pytest.mark.parametrize(("bot", "text", "previous", "expected"), [
    ("en", "我要退款", None, "en"),           # a bot of one language always speaks it
    ("zh", "refund please", None, "zh"),
    ("multi", "我要退款", None, "zh"),
    ("multi", "refund for 订单 123", None, "zh"),  # any Chinese character makes a first message Chinese
    ("multi", "我的 order 在哪", "en", "zh"), ("multi", "ok 我想退款", "en", "zh"),  # and a Chinese sentence another's
    # a name, a place or a word of Chinese in an English sentence does not: an address asked for, given in Chinese
    ("multi", "to 上海市徐汇区", "en", "en"), ("multi", "my address is 上海市徐汇区漕溪北路88号", "en", "en"),
    ("multi", "the invoice for 上海某某有限公司", "en", "en"), ("multi", "refund for 订单 123", "en", "en"),
    ("multi", "上海市徐汇区", "en", "zh"), ("multi", "a 上海", "en", "zh"), ("multi", "to 上海市徐汇区", "zh", "zh"),
    ("multi", "refund please", "zh", "en"),  # a typed English message switches back
    ("multi", "ok", "zh", "zh"),             # a single word does not: Chinese customers type "ok" and "thx" too
    ("multi", " iPhone15! ", "zh", "zh"),
    ("multi", "iPhone 15", "zh", "zh"),       # numbers aside
    ("multi", "ok thx", "zh", "zh"),          # nor does an acknowledgement
    ("multi", "hey refund please", "zh", "en"),  # a greeting with a request is not one
    ("multi", "Is there anything else I need to do?", "zh", "en"),
    ("multi", "ok thanks", "en", "en"),
    ("multi", "AirPods please", "zh", "en"),
    ("multi", "Zhang Wei", "zh", "zh"),       # nor does a name: a customer asked for theirs was answered in English
    ("multi", "MacBook Air M2", "zh", "zh"),
    ("multi", "iPhone 15 Pro Max", "zh", "zh"),
    ("multi", "ＯＫ", "zh", "zh"), ("multi", "ｉＰｈｏｎｅ　１５", "zh", "zh"),  # full width, as a Chinese input method types
    ("multi", "ｒｅｆｕｎｄ ｐｌｅａｓｅ", "zh", "en"),
    ("multi", "Zhang Wei", "en", "en"),
    ("multi", "Zhang Wei", None, "en"),
    ("multi", "Cancel my order", "zh", "en"),  # a request's words after its first are not capitalised
    ("multi", "Please Cancel My Order Now", "zh", "en"),  # nor is a title-cased one five words long
    ("multi", "Cancel My Order", "zh", "en"),  # nor one title-cased, nor one typed in capitals
    ("multi", "Refund Please", "zh", "en"),
    ("multi", "WHERE IS MY ORDER", "zh", "en"),
    ("multi", "HELP ME", "zh", "en"),
    ("multi", "Galaxy S24 Ultra XL", "zh", "zh"),
    # nor do a few keywords: a product's name in lower case, or a request's keywords, in a Chinese conversation
    ("multi", "iPhone case", "zh", "zh"), ("multi", "usb c cable", "zh", "zh"), ("multi", "track order", "zh", "zh"),
    ("multi", "iPhone case", "en", "en"), ("multi", "iPhone case", None, "en"),
    ("multi", "where is it", "zh", "en"), ("multi", "this is wrong", "zh", "en"), ("multi", "dont want it", "zh", "en"),
    ("multi", "they never came", "zh", "en"), ("multi", "usb c cable broken again", "zh", "en"),
    # a link or an e-mail address is in no language: the proof an order lookup asks for, given with thanks
    ("multi", "sam@example.com thanks", "zh", "zh"), ("multi", "sam@example.com", "zh", "zh"),
    ("multi", "https://shop.example/orders/123 ?", "zh", "zh"), ("multi", "sam@example.com thanks", "en", "en"),
    ("multi", "please send it to sam@example.com", "zh", "en"),
    ("multi", "Возврат", "zh", "en"),        # a word in another script is English's, as before
    ("multi", "ok", "en", "en"),
    ("multi", "ok", None, "en"),
    ("multi", "/track_order", "zh", "zh"),    # a button's payload keeps the conversation's language
    ("multi", "12345678", "zh", "zh"),        # so does a message with no letter in it
    ("multi", "👍 ！？", "zh", "zh"),
    ("multi", "👍", None, "en"),
    # a first one typed with a Chinese input method's punctuation is Chinese; a conversation's language is kept
    ("multi", "？？？", None, "zh"), ("multi", "。。。", None, "zh"), ("multi", "👍！", None, "zh"), ("multi", "???", None, "en"),
    ("multi", "？", "en", "en"),
    ("multi", "/track_order", None, "en"),
    ("multi", "/退款", "en", "en"),           # whatever script the intent's name is written in
    ("multi", "/退款", None, "zh"),           # a first message has no language to keep
    ("multi", '/choose_size{"size": "L"}', "zh", "zh"),  # an action's own button too
    ("multi", "환불해 주세요", "zh", "en"),   # another script is English's, as in a first message; it kept Chinese
    ("multi", "Возврат денег", "zh", "en"),
    ("multi", "注文をキャンセルしたい", "zh", "en"),  # Japanese, whose kanji read as Chinese: answered in Simplified
    ("multi", "ありがとう", "zh", "en"),
    ("multi", "ㄏㄏ", "en", "zh"),            # Bopomofo, and Chinese characters beyond the BMP, are Chinese
    ("multi", "𠮷野家在哪", "en", "zh"),
    ("multi", "𠮷", "en", "zh"),
    # Pinyin without its characters, as a customer without a Chinese input method types it, is Chinese
    ("multi", "wo yao tui huo", None, "zh"), ("multi", "zai ma?", "en", "zh"), ("multi", "Ni hao", None, "zh"),
    ("multi", "wo de dingdan 12345", None, "zh"), ("multi", "wǒ yào tuì huò", None, "zh"),
    ("multi", "nihao xiexie", None, "zh"), ("multi", "zhuan ren gong", "en", "zh"),
    ("multi", "he can", None, "en"), ("multi", "are you open", "zh", "en"),  # English words that are Pinyin too
    ("multi", "see you", None, "en"), ("multi", "make sure", None, "en"), ("multi", "take care", None, "en"),
    ("multi", "wo yao refund", None, "en"),   # a word of English makes it English, as before
    ("multi", "wo3 yao4 tui4 huo4", None, "zh"), ("multi", "ni3hao3", "zh", "zh"),  # tones typed as numbers
    ("multi", "ni3 hao3", "en", "zh"),
    ("multi", "li na", "en", "en"), ("multi", "zhang xiao ming", "en", "en"),  # a name in an English conversation
    ("multi", "li na", None, "zh"), ("multi", "zai ma", "en", "zh"),
    # a customer asking for the other language by name gets it, in whichever they ask
    ("multi", "我想用英文交流", "zh", "en"), ("multi", "可以说英语吗？", "zh", "en"), ("multi", "換成英文", "zh", "en"),
    ("multi", "English please", "zh", "en"), ("multi", "English", "zh", "en"), ("multi", "speak english", "zh", "en"),
    ("multi", "Chinese please", "en", "zh"), ("multi", "can you speak Mandarin?", "en", "zh"), ("multi", "Chinese", "en", "zh"),
    # not when it is no request: a language said of something else, or one the customer does not speak
    ("multi", "英文说明书有吗", "zh", "zh"), ("multi", "我不会说英文", "en", "zh"), ("multi", "我唔識講英文", "en", "zh"),
    ("multi", "I don't speak Chinese", "en", "en"), ("multi", "is the manual in Chinese?", "en", "en"),
    ("multi", "I bought a Chinese tea set", "en", "en"), ("multi", "we speak Cantonese at home", "en", "en"),
    ("multi", "I use Chinese characters in my address", "en", "en"), ("multi", "please don't reply in Chinese", "en", "en"),
    ("multi", "could you reply in Chinese?", "en", "zh"), ("multi", "switch to english", "zh", "en"),
])
def test_turn_language(bot: str, text: str, previous: str | None, expected: str) -> None:
    assert turn_language(bot, text, previous) == expected


def test_a_pages_language_is_kept_until_the_customer_writes_in_words() -> None:
    """The widget's page language answers a first order number or button; a first "hello" on a Chinese page
    is English, as nothing Chinese was said yet, while the same word later in a Chinese conversation is not."""
    assert turn_language("multi", "12345", None, page="zh") == "zh"
    assert turn_language("multi", "/greet", None, page="zh") == "zh"
    assert turn_language("multi", "hello?!", None, page="zh") == "en"
    assert turn_language("multi", "hello?!", "zh", page="en") == "zh"
    assert turn_language("multi", "12345", "en", page="zh") == "en"
    assert turn_language("multi", "sam@example.com", None, page="zh") == "zh"


def test_say_picks_the_language_then_the_default_then_the_first() -> None:
    assert say("Talk to a person", "zh") == "Talk to a person"
    assert say({"en": "Talk to a person", "zh": "转人工"}, "zh") == "转人工"
    assert say({"zh": "退款"}, "en", "Get refund") == "Get refund"
    assert say({"zh": "退款"}, "en") == "退款"


@pytest.mark.parametrize(("text", "previous", "expected"), [
    ("我的訂單在哪裡", None, "traditional"),
    ("我的订单在哪里", "traditional", "simplified"),
    ("為什麼要等", None, "traditional"),
    ("你好", "traditional", "traditional"),   # the same in both scripts: the conversation's stays
    ("我着急", "traditional", "traditional"),  # 着: Simplified, and Hong Kong's Traditional too
    ("20231", "traditional", "traditional"),
    ("where is my order", "simplified", "simplified"),
    ("訂单", "simplified", "simplified"),      # both at once: no evidence either way
    ("你好", None, None),
    ("訂單\ud83d", "simplified", "simplified"),  # half a surrogate pair, which the converter refuses
    # 台 as Taiwan and Hong Kong write it, which OpenCC's own forms make 臺: these were answered in Simplified
    ("我在台北，可以寄送嗎", None, "traditional"),
    ("一台電腦多少錢", "simplified", "traditional"),
    ("台湾", None, "simplified"),
    ("注文をキャンセルしたい", "traditional", "traditional"),  # Japanese: 注 is no Simplified 註
    # Hong Kong's Traditional forms for a customer who writes Cantonese, or whose conversation has them already
    ("佢哋幾時寄嘢嚟？", None, "hongkong"), ("有冇貨", "traditional", "hongkong"),
    ("我的訂單在哪裡", "hongkong", "hongkong"), ("你好", "hongkong", "hongkong"),
    ("我想查訂單，唔該", None, "hongkong"), ("我係陳大文", None, "hongkong"), ("沒有關係", None, "traditional"),
    ("我的订单在哪里", "hongkong", "simplified"), ("你哋有冇货", None, "simplified"),  # Cantonese in Simplified
    # Cantonese 晒 ("all") and 郁 ("move") as Hong Kong writes them, which OpenCC's forms make 曬 and 鬱
    ("唔該晒", None, "hongkong"), ("多謝晒，我想退款", None, "traditional"), ("件貨唔郁得", None, "hongkong"),
    ("晒衫", "traditional", "traditional"), ("晒图", None, "simplified"),
    # Cantonese asking what, why or whether, in words written in both scripts but for one: Taiwan's forms they were
    ("有咩優惠？", None, "hongkong"), ("點解咁遲", None, "hongkong"), ("啱啱收到", None, "hongkong"),
    ("我諗住今日去取貨", None, "hongkong"), ("幾時到㗎", "traditional", "hongkong"), ("乜時候到", None, "hongkong"),
    ("有咩优惠？", None, "simplified"), ("我谂住今日去取货", None, "simplified"),
])
def test_chinese_script(text: str, previous: str | None, expected: str | None) -> None:
    assert chinese_script(text, previous) == expected  # type: ignore[arg-type]


def test_in_script_converts_chinese_only() -> None:
    assert in_script("您的订单 A-12 已发货 (shipped)", "traditional") == "您的訂單 A-12 已發貨 (shipped)"
    assert in_script("您的訂單已發貨", "simplified") == "您的订单已发货"
    assert in_script("您的订单已发货", None) == "您的订单已发货"
    assert in_script("订单\ud83d", "traditional") == "订单\ud83d"  # refused by the converter: as written
    # a link, a Markdown link's target and an address are not Chinese to convert: /help/退貨 is another page
    assert in_script("退货政策见 https://shop.example.com/help/退货 或 [这里](https://shop.example.com/zh/发票)，"
                     "或写信给 售后@shop.cn", "traditional") == (
        "退貨政策見 https://shop.example.com/help/退货 或 [這裡](https://shop.example.com/zh/发票)，或寫信給 售后@shop.cn")
    assert in_script("詳見 https://shop.example.tw/退貨 謝謝", "simplified") == "详见 https://shop.example.tw/退貨 谢谢"
    # Chinese runs on after an address without a space: it ends at punctuation, and a name of ASCII before the @
    assert in_script("详见 https://shop.example/returns。请保管好包装，或发邮件至help@shop.cn，我们会尽快处理", "hongkong") == (
        "詳見 https://shop.example/returns。請保管好包裝，或發郵件至help@shop.cn，我們會盡快處理")


def test_a_reply_is_written_as_taiwan_and_hong_kong_write_it() -> None:
    """OpenCC's forms asked a Traditional-script customer to 回復 ("restore") or 回複 their choice."""
    assert in_script("请回复数字", "traditional") == "請回覆數字"
    assert in_script("请回复您的订单号，客服会尽快回复您。", "traditional") == "請回覆您的訂單號，客服會盡快回覆您。"
    assert in_script("恢复出厂设置", "traditional") == "恢復出廠設置"  # to restore is still 復
    # nor to keep (保留) their invoice as to grow their hair (留髮)
    assert in_script("请保留发票和包装，预留发票信息", "hongkong") == "請保留發票和包裝，預留發票信息"
    assert in_script("请保留发货单", "traditional") == "請保留發貨單"
    # nor days later (天後) as the goddess (天后): the demo's "提交 14 天后，删除将无法撤销" read 14 天后 in both forms
    assert in_script("提交 14 天后，删除将无法撤销；3天后到账", "traditional") == "提交 14 天後，刪除將無法撤銷；3天後到賬"
    assert in_script("送到天后站", "hongkong") == "送到天后站"  # Hong Kong's Tin Hau stays


def test_hong_kong_customers_read_hong_kong_forms() -> None:
    """A Traditional reply was written in Taiwan's forms (後臺, 裡面, 衛生) for Hong Kong customers too, who write 後台,
    裏面 and 衞生."""
    assert in_script("请在后台查看，里面有卫生纸，请回复数字", "hongkong") == "請在後台查看，裏面有衞生紙，請回覆數字"
    assert in_script("请在后台查看，里面有卫生纸", "traditional") == "請在後臺查看，裡面有衛生紙"
